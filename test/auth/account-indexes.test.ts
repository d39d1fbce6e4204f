// A user's personal access tokens and organisations are found from their own folders on real storage:
// listing them (the tokens page, the count of live tokens each new token is checked against, the
// organisations an account page shows, the roles a catalog filter asks for) reads theirs only, however many
// other users and organisations there are; what was made before the folders existed is filed once.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AccountManagement, AccountStore, MAX_REVOKED_KEPT, type Actor } from '../../auth/index.ts';
import { createStorage, FilesystemDriver, layout, localCoordination, type StorageDriver } from '../../storage/index.ts';

/** The real driver, counting the records under `dir` (the tokens' unless said) read through it. */
function counting(driver: StorageDriver, dir: string = layout.accessTokensDir): { driver: StorageDriver; reads: () => number } {
  let reads = 0;
  const wrapped = new Proxy(driver, {
    get(target, property, receiver) {
      if (property === 'getContent') {
        return (path: string) => {
          if (path.startsWith(`${dir}/`)) reads++;
          return target.getContent(path);
        };
      }
      const value = Reflect.get(target, property, receiver) as unknown;
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { driver: wrapped, reads: () => reads };
}

describe('auth: account indexes', function () {
  this.timeout(30_000);
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-account-indexes-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  describe('personal access tokens listed by owner', () => {
    it("reads only the owner's tokens, however many others hold", async () => {
      const { driver, reads: tokenReads } = counting(new FilesystemDriver(dir));
      const accounts = new AccountStore(driver, localCoordination().lock);
      await accounts.addUser('alice', 'alice-password-1');
      await accounts.addUser('bob', 'bob-password-12');
      for (let i = 0; i < 60; i++) await accounts.createToken('bob', `b${i}`, []);
      const mine = [await accounts.createToken('alice', 'laptop', []), await accounts.createToken('alice', 'ci', [])];

      const before = tokenReads();
      const listed = await accounts.tokensOf('alice');
      expect(listed.map((t) => t.id).sort()).to.deep.equal(mine.map((m) => m.token.id).sort());
      expect(tokenReads() - before, 'token records read to list alice\'s two').to.equal(2);
      expect(await accounts.tokensOf('bob')).to.have.length(60);
      expect(await accounts.tokensOf('nobody')).to.deep.equal([]);
      expect(await accounts.tokensOf('../auth')).to.deep.equal([]);
    });

    it('finds the tokens made before the owners\' folders existed, once per storage', async () => {
      const driver = new FilesystemDriver(dir);
      const first = new AccountStore(driver, localCoordination().lock);
      await first.addUser('carol', 'carol-password-1');
      await first.addUser('dave', 'dave-password-12');
      const carols = [await first.createToken('carol', 'one', []), await first.createToken('carol', 'two', [])];
      await first.createToken('dave', 'three', []);
      // The storage as an older Berth left it: token records only.
      await driver.delete('/auth/token-owners');
      await driver.delete(layout.accessTokenOwnersComplete);

      const { driver: counted, reads: tokenReads } = counting(driver);
      const upgraded = new AccountStore(counted, localCoordination().lock);
      expect((await upgraded.tokensOf('carol')).map((t) => t.id).sort()).to.deep.equal(carols.map((c) => c.token.id).sort());
      expect(await driver.stat(layout.accessTokenOwnersComplete), 'the completion is recorded').not.to.equal(undefined);
      expect(await upgraded.tokensOf('dave')).to.have.length(1);

      // Another process on the same storage finds the folders complete and lists without the walk.
      const { driver: again, reads: readsAgain } = counting(driver);
      const later = new AccountStore(again, localCoordination().lock);
      expect(await later.tokensOf('carol')).to.have.length(2);
      expect(readsAgain()).to.equal(2);
      expect(tokenReads()).to.be.greaterThan(2); // the upgrade read every token once
    });

    it("removing a user removes their tokens and their folder, and nobody else's", async () => {
      const driver = new FilesystemDriver(dir);
      const accounts = new AccountStore(driver, localCoordination().lock);
      await accounts.addUser('erin', 'erin-password-1');
      await accounts.addUser('frank', 'frank-password-1');
      const erins = await accounts.createToken('erin', 'one', []);
      await accounts.createToken('frank', 'two', []);
      const removed = await accounts.removeUser('erin');
      expect(removed.tokens).to.equal(1);
      expect(await accounts.token(erins.token.id)).to.equal(undefined);
      expect(await driver.list('/auth/token-owners')).to.deep.equal(['/auth/token-owners/frank']);
      expect(await accounts.tokensOf('frank')).to.have.length(1);
    });
  });

  it(`keeps the newest ${MAX_REVOKED_KEPT} revoked tokens of a user and revoked robots of a namespace, so revoking in a loop grows no list`, async () => {
    const driver = new FilesystemDriver(dir);
    const accounts = new AccountStore(driver, localCoordination().lock);
    await accounts.addUser('gina', 'gina-password-1');
    await accounts.addUser('hal', 'hal-password-123');
    const others = await accounts.createToken('hal', 'kept', []);
    await accounts.revoke(others.token.id);
    let last = '';
    for (let i = 0; i < MAX_REVOKED_KEPT + 5; i++) {
      const made = await accounts.createToken('gina', `t${i}`, []);
      await accounts.revoke(made.token.id);
      last = made.token.id;
    }
    const live = await accounts.createToken('gina', 'live', []);
    const tokens = await accounts.tokensOf('gina');
    expect(tokens).to.have.length(MAX_REVOKED_KEPT + 1);
    expect(tokens.map((t) => t.id)).to.include.members([last, live.token.id]);
    expect(await driver.list(layout.accessTokensOf('gina'))).to.have.length(MAX_REVOKED_KEPT + 1);
    expect(await accounts.tokensOf('hal'), "another user's revoked token stays").to.have.length(1);

    for (let i = 0; i < MAX_REVOKED_KEPT + 2; i++) {
      await accounts.createRobot('gina', `r${i}`, []);
      await accounts.revoke(`gina+r${i}`);
    }
    const robots = await accounts.robotsOf('gina');
    expect(robots).to.have.length(MAX_REVOKED_KEPT);
    expect(robots.map((r) => r.name)).to.include(`gina+r${MAX_REVOKED_KEPT + 1}`);
  });

  describe('organisations listed by member', () => {

    it("reads only the member's organisations, and follows each change of role", async () => {
      const { driver, reads: orgReads } = counting(new FilesystemDriver(dir), '/auth/orgs');
      const accounts = new AccountStore(driver, localCoordination().lock);
      await accounts.addUser('alice', 'alice-password-1');
      await accounts.addUser('bob', 'bob-password-12');
      for (let i = 0; i < 40; i++) await accounts.addOrganisation(`other${i}`, 'bob');
      await accounts.addOrganisation('acme', 'alice');
      await accounts.addOrganisation('umbrella');
      await accounts.setMember('umbrella', 'alice', 'read');

      const before = orgReads();
      const orgs = await accounts.organisationsOf('alice');
      expect(orgs.map((o) => `${o.name}:${o.members.alice}`).sort()).to.deep.equal(['acme:admin', 'umbrella:read']);
      expect(orgReads() - before, "organisation records read to find alice's two").to.equal(2);

      await accounts.setMember('umbrella', 'alice', 'write');
      expect((await accounts.organisationsOf('alice')).map((o) => `${o.name}:${o.members.alice}`).sort()).to.deep.equal(['acme:admin', 'umbrella:write']);
      await accounts.setMember('umbrella', 'alice', undefined);
      expect((await accounts.organisationsOf('alice')).map((o) => o.name)).to.deep.equal(['acme']);
      expect(await driver.list(layout.membershipsOf('alice'))).to.deep.equal([layout.membership('alice', 'acme')]);
      expect(await accounts.organisationsOf('bob')).to.have.length(40);
      expect(await accounts.organisationsOf('../orgs')).to.deep.equal([]);
    });

    it("gives an admin every organisation a page at a time, each page reading its own records; a member their own", async () => {
      const { driver, reads: orgReads } = counting(new FilesystemDriver(dir), layout.organisationsDir);
      const coordination = localCoordination();
      const storage = createStorage(driver, undefined, coordination);
      const accounts = new AccountStore(storage.driver, coordination.lock);
      const management = new AccountManagement(accounts, undefined, storage.policies, storage.quotas);
      const operator: Actor = { kind: 'operator', name: 'root', via: 'test' };
      const chief: Actor = { kind: 'principal', principal: { kind: 'user', name: 'chief', admin: true }, via: 'test' };
      const alice: Actor = { kind: 'principal', principal: { kind: 'user', name: 'alice', admin: false }, via: 'test' };
      await accounts.addUser('alice', 'alice-password-1');
      const names = Array.from({ length: 45 }, (_, i) => `org${String(i).padStart(2, '0')}`);
      for (const name of names) await accounts.addOrganisation(name, Number(name.slice(3)) % 10 === 0 ? 'alice' : undefined);

      const seen: string[] = [];
      let last: string | undefined;
      for (let pages = 0; ; pages++) {
        expect(pages, 'pages of 20 to list 45').to.be.below(3);
        const before = orgReads();
        const page = await management.managedOrganisations(chief, 20, last);
        expect(orgReads() - before, 'organisation records read for one page').to.equal(page.organisations.length);
        expect(page.organisations.length).to.be.within(1, 20);
        seen.push(...page.organisations.map((o) => o.name));
        if (!page.next) break;
        last = page.next;
      }
      expect(seen).to.deep.equal(names);
      expect((await management.managedOrganisations(operator, 1000)).organisations).to.have.length(45);

      const own = await management.managedOrganisations(alice, 2);
      expect(own.organisations.map((o) => o.name)).to.deep.equal(['org00', 'org10']);
      expect((await management.managedOrganisations(alice, 2, own.next)).organisations.map((o) => o.name)).to.deep.equal(['org20', 'org30']);
      expect((await management.managedOrganisations(alice, 10, 'org30')).organisations.map((o) => o.name)).to.deep.equal(['org40']);
      expect(await management.managedOrganisations(chief, 10, '../etc').catch((err: unknown) => err)).to.have.property('refusal', 'invalid');
    });

    it("finds the memberships made before the folders existed, once per storage", async () => {
      const driver = new FilesystemDriver(dir);
      const first = new AccountStore(driver, localCoordination().lock);
      await first.addUser('carol', 'carol-password-1');
      await first.addOrganisation('acme', 'carol');
      await first.addOrganisation('initech');
      await first.setMember('initech', 'carol', 'read');
      await first.addOrganisation('empty');
      // The storage as an older Berth left it: organisation records only.
      await driver.delete('/auth/memberships');
      await driver.delete(layout.membershipsComplete);

      const upgraded = new AccountStore(driver, localCoordination().lock);
      expect((await upgraded.organisationsOf('carol')).map((o) => o.name).sort()).to.deep.equal(['acme', 'initech']);
      expect(await driver.stat(layout.membershipsComplete), 'the completion is recorded').not.to.equal(undefined);
      const { driver: again, reads: orgReads } = counting(driver, '/auth/orgs');
      expect(await new AccountStore(again, localCoordination().lock).organisationsOf('carol')).to.have.length(2);
      expect(orgReads()).to.equal(2);
    });

    it("removing a user takes their roles in their organisations and their folder, and leaves the others", async () => {
      const driver = new FilesystemDriver(dir);
      const accounts = new AccountStore(driver, localCoordination().lock);
      await accounts.addUser('erin', 'erin-password-1');
      await accounts.addUser('frank', 'frank-password-1');
      await accounts.addOrganisation('acme', 'frank');
      await accounts.setMember('acme', 'erin', 'write');
      await accounts.addOrganisation('solo', 'frank');
      const removed = await accounts.removeUser('erin');
      expect(removed.roles).to.deep.equal(['acme']);
      expect((await accounts.organisation('acme'))!.members).to.deep.equal({ frank: 'admin' });
      expect(await driver.list('/auth/memberships')).to.deep.equal([layout.membershipsOf('frank')]);
      expect((await accounts.organisationsOf('frank')).map((o) => o.name).sort()).to.deep.equal(['acme', 'solo']);
    });
  });
});
