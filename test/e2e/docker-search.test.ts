// `docker search HOST/term` against Berth's /v1/search: a real dockerd asks, and lists the public
// repositories that match (names and descriptions), never a private one.
import { expect } from 'chai';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { AuthorizedRegistry, addUser, bearer, cli, tokenFor } from '../helpers/auth.ts';
import { startDockerd, type DockerEngine } from '../helpers/clients.ts';
import { Registry } from '../helpers/registry.ts';

describe('e2e: docker search lists Berth repositories', function () {
  this.timeout(180_000);
  let berth: TestBerth;
  let engine: DockerEngine;

  before(async () => {
    berth = await startBerth({ env: { BERTH_MODE: 'public-index' } });
    await addUser(berth, 'carol', 'carol-password-1');
    const registry = new Registry(berth.url);
    const owner = new AuthorizedRegistry(
      berth.url,
      bearer(await tokenFor(registry, ['repository:carol/searchable:pull,push', 'repository:carol/hidden-search:pull,push'], ['carol', 'carol-password-1'])),
    );
    await owner.pushImage('carol/searchable', 'v1');
    await owner.pushImage('carol/hidden-search', 'v1');
    await cli(berth, ['repo', 'visibility', 'carol/hidden-search', 'private']);
    engine = await startDockerd({ insecureRegistries: [berth.host] });
  });
  after(async () => {
    await engine?.stop();
    await berth?.destroy();
  });

  it('finds the public repository by a term and leaves the private one out', async () => {
    const out = await engine.docker(['search', '--no-trunc', `${berth.host}/search`]);
    const lines = out.stdout.trim().split('\n');
    expect(lines[0]).to.match(/^NAME\s+DESCRIPTION\s+STARS\s+OFFICIAL/);
    const names = lines.slice(1).map((l) => l.split(/\s+/)[0]);
    expect(names).to.have.lengthOf(1);
    expect(names[0]).to.equal('carol/searchable');
    expect(out.stdout).to.not.include('hidden-search');
  });
});
