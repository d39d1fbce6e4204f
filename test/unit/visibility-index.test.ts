// The visibility index over real filesystem storage: made once from settings that were there before it,
// kept by RepositoryStore.update, seen by another process (another store on the same data) through its
// stamp, and never showing a repository more than its settings do when a write fails halfway.
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FilesystemDriver, layout, LocalLock, RepositoryStore, type StorageDriver } from '../../storage/index.ts';

/** The driver, failing every write of a settings file while `failing` says so. */
function failingSettings(driver: StorageDriver, state: { failing: boolean }): StorageDriver {
  return new Proxy(driver, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (property !== 'putContent') return typeof value === 'function' ? value.bind(target) : value;
      return (path: string, content: Buffer | string) => {
        if (state.failing && path.endsWith('/_settings.json')) return Promise.reject(new Error('disk full'));
        return target.putContent(path, content);
      };
    },
  });
}

describe('unit: the visibility index', () => {
  let dir: string;
  let driver: FilesystemDriver;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-visibility-'));
    driver = new FilesystemDriver(dir);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('is made once from the settings stored before it existed', async () => {
    await driver.putContent(layout.repositorySettings('old/secret'), JSON.stringify({ visibility: 'private' }));
    await driver.putContent(layout.repositorySettings('old/open'), JSON.stringify({ visibility: 'public' }));
    await driver.putContent(layout.repositorySettings('old/nested/unset'), JSON.stringify({ description: 'no visibility' }));
    const index = await new RepositoryStore(driver, new LocalLock()).visibilities();
    expect(['old/secret', 'old/open', 'old/nested/unset', 'never/stored'].map((n) => index.of(n))).to.deep.equal(['private', 'public', undefined, undefined]);
    expect(await driver.stat(layout.visibilityComplete)).to.not.equal(undefined);
  });

  it('follows every change, also one made by another process on the same storage', async () => {
    const here = new RepositoryStore(driver, new LocalLock());
    const elsewhere = new RepositoryStore(new FilesystemDriver(dir), new LocalLock());
    await here.update('acme/app', { visibility: 'private' });
    expect((await here.visibilities()).of('acme/app')).to.equal('private');
    await elsewhere.update('acme/app', { visibility: 'public' });
    expect((await here.visibilities()).of('acme/app')).to.equal('public');
    await elsewhere.update('acme/app', { description: 'visibility untouched' });
    expect((await here.visibilities()).of('acme/app')).to.equal('public');
    await elsewhere.update('acme/app', { visibility: undefined });
    expect((await here.visibilities()).of('acme/app')).to.equal(undefined);
    await elsewhere.update('acme/app', { visibility: 'private' });
    expect((await here.visibilities()).of('acme/app')).to.equal('private');
  });

  it('a repository made private changes the stamp once, and a copy loaded before its settings were written already hides it', async () => {
    const elsewhere = new RepositoryStore(new FilesystemDriver(dir), new LocalLock());
    let stampWrites = 0;
    let copyMidway: Promise<unknown> | undefined;
    const watched = new Proxy(driver, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (property !== 'putContent') return typeof value === 'function' ? value.bind(target) : value;
        return async (path: string, content: Buffer | string) => {
          if (path === layout.visibilityStamp) stampWrites++;
          // Another process loads its copy after the stamp changed, before the settings are written.
          if (path.endsWith('/_settings.json')) copyMidway = elsewhere.visibilities();
          return target.putContent(path, content);
        };
      },
    });
    const store = new RepositoryStore(watched, new LocalLock());
    await store.update('acme/new', { visibility: 'private' });
    expect(stampWrites, 'a new private repository').to.equal(1);
    await store.update('acme/open', { visibility: 'public' });
    await elsewhere.visibilities();
    stampWrites = 0;
    await store.update('acme/open', { visibility: 'private' });
    await copyMidway;
    expect(stampWrites, 'public made private').to.equal(1);
    expect((await elsewhere.visibilities()).of('acme/open'), 'the copy loaded midway, still current').to.equal('private');
    expect((await elsewhere.visibilities()).of('acme/new')).to.equal('private');
    stampWrites = 0;
    await store.update('acme/open', { visibility: undefined });
    expect(stampWrites, 'private unset: hidden first, shown by the default after').to.equal(2);
    expect((await elsewhere.visibilities()).of('acme/open')).to.equal(undefined);
  });

  it('never shows a repository more than its settings when the settings write fails', async () => {
    const state = { failing: false };
    const store = new RepositoryStore(failingSettings(driver, state), new LocalLock());
    await store.update('acme/app', { visibility: 'public' });
    expect((await store.visibilities()).of('acme/app'), 'held in memory').to.equal('public');
    state.failing = true;
    await store.update('acme/app', { visibility: 'private' }).then(() => expect.fail('the write should fail'), () => {});
    // The settings still say public; the index already hides it (hidden is safe, shown would leak).
    expect((await store.settings('acme/app'))?.visibility).to.equal('public');
    expect((await store.visibilities()).of('acme/app')).to.equal('private');

    state.failing = false;
    await store.update('acme/new', { visibility: 'private' });
    state.failing = true;
    await store.update('acme/new', { visibility: 'public' }).then(() => expect.fail('the write should fail'), () => {});
    expect((await store.settings('acme/new'))?.visibility).to.equal('private');
    expect((await store.visibilities()).of('acme/new')).to.equal('private');
  });
});
