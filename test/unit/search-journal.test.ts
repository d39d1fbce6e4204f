// The search journal: another process catches up by the repositories a writer changed, each once, and
// reads everything only when a change it has not applied has left the journal.
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FilesystemDriver } from '../../storage/index.ts';
import { JOURNAL_LENGTH, SearchJournal } from '../../storage/search-journal.ts';

describe('unit: the search journal', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-journal-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('names each changed repository once, and only what changed since the reader last looked', async () => {
    const driver = new FilesystemDriver(dir);
    const writer = new SearchJournal(driver);
    const reader = new SearchJournal(driver);
    await reader.mark();
    for (let i = 0; i < 50; i++) await writer.record(`team/app-${i % 3}`);
    expect(await reader.catchUp()).to.deep.equal({ kind: 'names', names: new Set(['team/app-0', 'team/app-1', 'team/app-2']) });
    expect(await reader.catchUp()).to.deep.equal({ kind: 'names', names: new Set() });
    await writer.record('team/app-1');
    expect(await reader.catchUp()).to.deep.equal({ kind: 'names', names: new Set(['team/app-1']) });
    expect((await driver.getContent(`/search-journal/${writer.writer}.json`))!.length).to.be.below(1000);
  });

  it('says to read everything when a change the reader has not applied left the journal', async () => {
    const driver = new FilesystemDriver(dir);
    const writer = new SearchJournal(driver);
    const reader = new SearchJournal(driver);
    const behind = new SearchJournal(driver);
    await reader.mark();
    await behind.mark();
    await writer.record('first');
    for (let i = 1; i < JOURNAL_LENGTH - 1; i++) void writer.record(`repo-${i}`);
    await writer.record(`repo-${JOURNAL_LENGTH - 1}`);
    const all = await reader.catchUp();
    expect(all.kind === 'names' && all.names.size).to.equal(JOURNAL_LENGTH);
    // One more repository pushes `first` out of the journal.
    await writer.record('last');
    // The reader that never saw `first` must read everything; the one that applied it lost nothing.
    expect((await behind.catchUp()).kind).to.equal('everything');
    expect(await reader.catchUp()).to.deep.equal({ kind: 'names', names: new Set(['last']) });
  });
});
