// FolderSweep (storage/walk.ts): the expiry sweep's bound. A run looks at no more than a page of a
// folder, the next run goes on after it, and after the end the sweep starts again at the front.
import { expect } from 'chai';
import { FilesystemDriver, FolderSweep } from '../../storage/index.ts';
import { removeDir, tempDir } from '../helpers/clients.ts';

describe('unit: FolderSweep', () => {
  it('judges at most a page per run, goes on where it stopped, and wraps round', async () => {
    const root = tempDir('sweep');
    try {
      await sweepFive(new FilesystemDriver(root));
    } finally {
      removeDir(root);
    }
  });
});

async function sweepFive(driver: FilesystemDriver): Promise<void> {
  for (const name of ['a', 'b', 'c', 'd', 'e']) await driver.putContent(`/things/${name}`, name === 'b' || name === 'e' ? 'old' : 'new');
  const sweep = new FolderSweep(driver, '/things', 2);
  const runs: string[][] = [];
  const removed: number[] = [];
  for (let i = 0; i < 4; i++) {
    const seen: string[] = [];
    removed.push(await sweep.run(async (path) => {
      seen.push(path.slice('/things/'.length));
      return (await driver.getContent(path))!.toString() === 'old';
    }));
    runs.push(seen);
  }
  expect(runs.map((r) => r.sort())).to.deep.equal([['a', 'b'], ['c', 'd'], ['e'], ['a', 'c']]);
  expect(removed).to.deep.equal([1, 0, 1, 0]);
  expect(await driver.list('/things')).to.deep.equal(['/things/a', '/things/c', '/things/d']);
}
