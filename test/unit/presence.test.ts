// Server markers (storage/presence.ts): how `berth gc` and `berth retention run` tell that a server
// without Redis uses the storage.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { FilesystemDriver, PresenceMarker, serversWithoutSharedState } from '../../storage/index.ts';

describe('server presence markers', () => {
  let root: string;
  let driver: FilesystemDriver;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'berth-presence-'));
    driver = new FilesystemDriver(root);
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it('a started marker is found until it is stopped', async () => {
    const marker = new PresenceMarker(driver);
    await marker.start();
    const found = await serversWithoutSharedState(driver);
    expect(found.map((p) => [p.host, p.pid])).to.deep.equal([[hostname(), process.pid]]);
    await marker.stop();
    expect(await serversWithoutSharedState(driver)).to.deep.equal([]);
  });

  it('ignores a marker not renewed for two minutes, and one of a process on this machine that is gone', async () => {
    const marker = new PresenceMarker(driver);
    await marker.start();
    expect(await serversWithoutSharedState(driver, Date.now() + 121_000)).to.deep.equal([]);
    await marker.stop();

    const gone = spawnSync(process.execPath, ['-e', '']).pid!;
    const now = new Date().toISOString();
    await driver.putContent('/servers/crashed.json', JSON.stringify({ host: hostname(), pid: gone, startedAt: now, renewedAt: now }));
    await driver.putContent('/servers/elsewhere.json', JSON.stringify({ host: 'another-host', pid: gone, startedAt: now, renewedAt: now }));
    await driver.putContent('/servers/broken.json', '{');
    expect((await serversWithoutSharedState(driver)).map((p) => p.host)).to.deep.equal(['another-host']);
  });
});
