// A user's personal access tokens are listed from their own folder on real storage: listing them (the
// tokens page, and the count of live tokens each new token is checked against) reads their tokens only,
// however many other users hold; tokens made before the folders existed are found once, then kept.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AccountStore } from '../../auth/index.ts';
import { FilesystemDriver, layout, localCoordination, type StorageDriver } from '../../storage/index.ts';

/** The real driver, counting the token records read through it. */
function counting(driver: StorageDriver): { driver: StorageDriver; tokenReads: () => number } {
  let reads = 0;
  const wrapped = new Proxy(driver, {
    get(target, property, receiver) {
      if (property === 'getContent') {
        return (path: string) => {
          if (path.startsWith(`${layout.accessTokensDir}/`)) reads++;
          return target.getContent(path);
        };
      }
      const value = Reflect.get(target, property, receiver) as unknown;
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { driver: wrapped, tokenReads: () => reads };
}

describe('auth: personal access tokens listed by owner', function () {
  this.timeout(30_000);
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-token-owners-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("reads only the owner's tokens, however many others hold", async () => {
    const { driver, tokenReads } = counting(new FilesystemDriver(dir));
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

    const { driver: counted, tokenReads } = counting(driver);
    const upgraded = new AccountStore(counted, localCoordination().lock);
    expect((await upgraded.tokensOf('carol')).map((t) => t.id).sort()).to.deep.equal(carols.map((c) => c.token.id).sort());
    expect(await driver.stat(layout.accessTokenOwnersComplete), 'the completion is recorded').not.to.equal(undefined);
    expect(await upgraded.tokensOf('dave')).to.have.length(1);

    // Another process on the same storage finds the folders complete and lists without the walk.
    const { driver: again, tokenReads: readsAgain } = counting(driver);
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
