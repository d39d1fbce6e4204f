// The access policy, table-tested: (who, repository, facts, limit) -> allowed actions.
import { expect } from 'chai';
import { allowedActions, mayListCatalog, namespaceOf, type Principal, type RepositoryFacts, type ScopeGrant } from '../../auth/index.ts';
import { parseScopes, mergeScopes } from '../../auth/index.ts';

const anonymous: Principal = { kind: 'anonymous' };
const alice: Principal = { kind: 'user', name: 'alice', admin: false };
const bob: Principal = { kind: 'user', name: 'bob', admin: false };
const root: Principal = { kind: 'user', name: 'root', admin: true };
const robot: Principal = { kind: 'robot', name: 'acme+ci', namespace: 'acme' };

const PUBLIC_INDEX: RepositoryFacts = { mode: 'public-index', visibility: 'public' };
const PRIVATE_REPO: RepositoryFacts = { mode: 'public-index', visibility: 'private' };
const PRIVATE_MODE_PUBLIC: RepositoryFacts = { mode: 'private', visibility: 'public' };

const cases: Array<[string, Principal, string, RepositoryFacts, ScopeGrant[] | undefined, string[]]> = [
  ['anonymous pulls a public repository in public-index mode', anonymous, 'alice/app', PUBLIC_INDEX, undefined, ['pull']],
  ['anonymous gets nothing of a private repository', anonymous, 'alice/app', PRIVATE_REPO, undefined, []],
  ['anonymous gets nothing in private mode, even of a public repository', anonymous, 'alice/app', PRIVATE_MODE_PUBLIC, undefined, []],
  ['a signed-in user pulls a public repository in private mode', bob, 'alice/app', PRIVATE_MODE_PUBLIC, undefined, ['pull']],
  ['the owner of a namespace does everything in it', alice, 'alice/app', PRIVATE_REPO, undefined, ['pull', 'push', 'delete']],
  ['another user only pulls a public repository', bob, 'alice/app', PUBLIC_INDEX, undefined, ['pull']],
  ['another user gets nothing of a private repository', bob, 'alice/app', PRIVATE_REPO, undefined, []],
  ['an admin does everything, library/ included', root, 'library/busybox', PRIVATE_REPO, undefined, ['pull', 'push', 'delete']],
  ['a user cannot push to library/', alice, 'library/busybox', PUBLIC_INDEX, undefined, ['pull']],
  ['a one-part name belongs to library/', alice, 'busybox', PUBLIC_INDEX, undefined, ['pull']],
  ['an org reader pulls a private repository', bob, 'acme/tool', { ...PRIVATE_REPO, orgRole: 'read' }, undefined, ['pull']],
  ['an org writer pushes', bob, 'acme/tool', { ...PRIVATE_REPO, orgRole: 'write' }, undefined, ['pull', 'push']],
  ['an org admin deletes', bob, 'acme/tool', { ...PRIVATE_REPO, orgRole: 'admin' }, undefined, ['pull', 'push', 'delete']],
  ['a token limit takes rights away', alice, 'alice/app', PRIVATE_REPO, [{ pattern: 'alice/*', actions: ['pull'] }], ['pull']],
  ['a token limit never adds rights', bob, 'alice/app', PRIVATE_REPO, [{ pattern: '*', actions: ['pull', 'push', 'delete'] }], []],
  ['a token limit for another repository leaves nothing', alice, 'alice/app', PRIVATE_REPO, [{ pattern: 'alice/other', actions: ['pull'] }], []],
  ['a robot acts within its scopes in its organisation', robot, 'acme/tool', PRIVATE_REPO, [{ pattern: 'acme/*', actions: ['pull', 'push'] }], ['pull', 'push']],
  ['a robot gets nothing private outside its organisation', robot, 'alice/app', PRIVATE_REPO, [{ pattern: '*', actions: ['pull', 'push'] }], []],
  ['open mode allows everything to everyone', anonymous, 'alice/app', { mode: 'open', visibility: 'private' }, undefined, ['pull', 'push', 'delete']],
];

describe('unit: the access policy', function () {
  for (const [title, who, name, facts, limit, expected] of cases) {
    it(title, function () {
      expect([...allowedActions(who, name, facts, limit)].sort()).to.deep.equal([...expected].sort());
    });
  }

  it('finds the namespace of a name', function () {
    expect(namespaceOf('acme/team/app')).to.equal('acme');
    expect(namespaceOf('busybox')).to.equal('library');
  });

  it('lets anyone list the catalog in public-index mode, only accounts in private mode', function () {
    expect(mayListCatalog(anonymous, 'public-index')).to.equal(true);
    expect(mayListCatalog(anonymous, 'private')).to.equal(false);
    expect(mayListCatalog(bob, 'private')).to.equal(true);
  });

  it('parses scopes with a registry host and port in the name, and merges repeated ones', function () {
    expect(parseScopes(['repository:localhost:5000/app:pull', 'repository(plugin):a/b:pull,push registry:catalog:*'])).to.deep.equal([
      { type: 'repository', name: 'localhost:5000/app', actions: ['pull'] },
      { type: 'repository', name: 'a/b', actions: ['pull', 'push'] },
      { type: 'registry', name: 'catalog', actions: ['*'] },
    ]);
    expect(mergeScopes(parseScopes(['repository:a/b:pull', 'repository:a/b:push', 'repository:a/b:pull']))).to.deep.equal([
      { type: 'repository', name: 'a/b', actions: ['pull', 'push'] },
    ]);
  });
});
