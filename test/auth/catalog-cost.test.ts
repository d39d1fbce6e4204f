// What the catalog and the search cost, counted in storage reads rather than timed: with thousands of
// private repositories around a few public ones, an anonymous `_catalog?n=1`, a page of the search and a
// signed-in user's catalog read nothing of any repository the caller cannot see — and read exactly as
// much with twice as many private repositories. The app runs in this process (createApp) over a
// filesystem driver that counts every read.
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createApp, type Berth } from '../../server/app.ts';
import { loadConfig } from '../../server/config.ts';
import { FilesystemDriver, layout, type StorageDriver } from '../../storage/index.ts';
import { basic } from '../helpers/auth.ts';

const READS = new Set(['getContent', 'stat', 'list', 'reader', 'copyTo']);
const PRIVATE = 2000;

/** The driver, with every read it serves recorded as `<method> <path>`. */
function counting(driver: StorageDriver, reads: string[]): StorageDriver {
  return new Proxy(driver, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (READS.has(String(property))) reads.push(`${String(property)} ${String(args[0])}`);
        return value.apply(target, args);
      };
    },
  });
}

/** A repository as a server that ran before would have left it: catalog entry, settings, search entry. */
async function storeRepository(driver: StorageDriver, name: string, settings: object | undefined): Promise<void> {
  await driver.putContent(layout.catalogEntry(name), '');
  if (settings) await driver.putContent(layout.repositorySettings(name), JSON.stringify(settings));
  const entry = { name, description: '', ...settings, tags: [], os: [], architectures: [], pulls: 0 };
  await driver.putContent(layout.searchEntry(name), JSON.stringify(entry));
}

const ghost = (i: number) => `ghost${String(i).padStart(5, '0')}/app`;

describe('auth: the catalog and the search cost nothing per repository the caller cannot see', function () {
  this.timeout(120_000);
  const reads: string[] = [];
  let dataDir: string;
  let berth: Berth;
  let server: Server;
  let base: string;

  const get = async (path: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${base}${path}`, { headers });
    expect(res.status, path).to.equal(200);
    return res.json() as Promise<any>;
  };
  const token = async (scope: string, credentials?: [string, string]) =>
    (await get(`/token?service=berth${scope ? `&scope=${encodeURIComponent(scope)}` : ''}`, credentials ? { Authorization: basic(...credentials) } : {})).token as string;
  /** The reads one request makes, once the caches it may fill are warm (the same request just before). */
  const readsOf = async (path: string, headers: Record<string, string> = {}) => {
    await get(path, headers);
    reads.length = 0;
    const body = await get(path, headers);
    return { body, reads: [...reads] };
  };
  const ofHidden = (list: string[]) => list.filter((r) => /ghost|vault/.test(r));

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'berth-catalog-cost-'));
    // Stored before the server starts, as by an earlier version: the visibility index is made from the settings.
    const plain = new FilesystemDriver(dataDir);
    for (let i = 0; i < PRIVATE; i++) await storeRepository(plain, ghost(i), { visibility: 'private' });
    for (let i = 0; i < 20; i++) await storeRepository(plain, `vault/app${i}`, { visibility: 'private' });
    await storeRepository(plain, 'crew/tool', { visibility: 'private' });
    for (let i = 0; i < 10; i++) await storeRepository(plain, `zz/pub${i}`, { visibility: 'public' });
    // Settings without a visibility, and none at all: the mode's default (public here).
    await storeRepository(plain, 'zz/unset', { description: 'pushed before auth was on' });
    await storeRepository(plain, 'zz/bare', undefined);

    const config = loadConfig({ BERTH_DATA: dataDir, BERTH_MODE: 'public-index', BERTH_LISTEN: '127.0.0.1:0', BERTH_RATE_LIMIT_PER_MINUTE: '0' });
    berth = await createApp(config, pino({ level: 'silent' }), counting(new FilesystemDriver(dataDir), reads));
    await berth.auth!.accounts.addUser('bob', 'bob-password-1');
    await berth.auth!.accounts.addOrganisation('vault');
    await berth.auth!.accounts.addOrganisation('crew', 'bob');
    server = createServer(berth.app.callback());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    rmSync(dataDir, { recursive: true, force: true });
  });

  const PUBLIC = [...Array.from({ length: 10 }, (_, i) => `zz/pub${i}`), 'zz/bare', 'zz/unset'].sort();

  it('answers an anonymous _catalog?n=1 with one read (the visibility stamp), however many private repositories sort before', async () => {
    const bearer = { Authorization: `Bearer ${await token('registry:catalog:*')}` };
    const all = await get('/v2/_catalog', bearer);
    expect(all.repositories).to.deep.equal(PUBLIC);
    const first = await readsOf('/v2/_catalog?n=1', bearer);
    expect(first.body.repositories).to.deep.equal(['zz/bare']);
    expect(first.reads).to.deep.equal([`getContent ${layout.visibilityStamp}`]);
    const next = await readsOf('/v2/_catalog?n=2&last=zz/pub3', bearer);
    expect(next.body.repositories).to.deep.equal(['zz/pub4', 'zz/pub5']);
    expect(next.reads).to.deep.equal([`getContent ${layout.visibilityStamp}`]);
  });

  it('answers a page of the search reading only the settings of what it shows', async () => {
    for (const path of ['/api/v1/search?n=10', '/v1/search?q=zz&n=10']) {
      const { body, reads: made } = await readsOf(path);
      const shown = (body.results as Array<{ name: string }>).map((r) => r.name);
      expect(shown, path).to.deep.equal(PUBLIC.slice(0, 10));
      expect(body.num_results ?? body.total, path).to.equal(PUBLIC.length);
      expect(ofHidden(made), path).to.deep.equal([]);
      // The stamp, and for each shown repository its settings (Visibility.confirm) and perhaps its catalog entry.
      expect(made.length, made.join('\n')).to.be.at.most(1 + 2 * shown.length);
    }
  });

  it('reads for a signed-in user one listing of their memberships and one document per organisation they are in, not per repository', async () => {
    const bob: [string, string] = ['bob', 'bob-password-1'];
    const bearer = { Authorization: `Bearer ${await token('registry:catalog:*', bob)}` };
    const { body, reads: made } = await readsOf('/v2/_catalog?n=2', bearer);
    expect(body.repositories).to.deep.equal(['crew/tool', 'zz/bare']);
    expect(made.filter((r) => r.includes('/repositories/'))).to.deep.equal([]);
    // Besides the stamp: the list of bob's memberships and his organisation crew's document. Neither vault,
    // whose 20 private repositories sort before zz/bare, nor the 2,000 private repositories of namespaces
    // that are no organisation cost a read: nothing grows with the organisations he is not in.
    expect(made.sort()).to.deep.equal([`getContent ${layout.visibilityStamp}`, 'getContent /auth/orgs/crew.json', `list ${layout.membershipsOf('bob')}`].sort());
    const search = await readsOf('/api/v1/search?n=3', { Authorization: `Bearer ${await token('', bob)}` });
    expect(search.body.results.map((r: { name: string }) => r.name)).to.deep.equal(['crew/tool', 'zz/bare', 'zz/pub0']);
    expect(search.body.total).to.equal(PUBLIC.length + 1);
    // Of what bob cannot see nothing is read: not the organisation vault, nor one of its 20 repositories.
    expect(ofHidden(search.reads)).to.deep.equal([]);
  });

  it('reads exactly as much with twice as many private repositories', async () => {
    const bearer = { Authorization: `Bearer ${await token('registry:catalog:*')}` };
    const before = await readsOf('/v2/_catalog?n=1', bearer);
    const searchBefore = await readsOf('/api/v1/search?n=10');
    // Made private through the settings, as the admin command does (the index is kept by RepositoryStore.update).
    for (let i = PRIVATE; i < 2 * PRIVATE; i++) {
      await berth.storage.driver.putContent(layout.catalogEntry(ghost(i)), '');
      await berth.storage.repositories.update(ghost(i), { visibility: 'private' });
    }
    await berth.coordination.generations.bump('_catalog');
    const after = await readsOf('/v2/_catalog?n=1', bearer);
    expect(after.body).to.deep.equal(before.body);
    expect(after.reads).to.deep.equal(before.reads);
    const searchAfter = await readsOf('/api/v1/search?n=10');
    expect(searchAfter.body.results).to.deep.equal(searchBefore.body.results);
    expect(searchAfter.reads.sort()).to.deep.equal(searchBefore.reads.sort());
  });
});
