// AccountManagement on real storage (a folder): the bounds on live credentials, and that each refusal is
// audited with the actor's name and never a secret.
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AccountError, AccountManagement, AccountStore, AuditLog, MAX_LIVE_CREDENTIALS, type Actor, type AuditEvent } from '../../auth/index.ts';
import { createStorage, FilesystemDriver, localCoordination } from '../../storage/index.ts';

describe('auth: AccountManagement', function () {
  this.timeout(30_000);
  let dir: string;
  let management: AccountManagement;
  const lines: AuditEvent[] = [];
  const alice: Actor = { kind: 'principal', principal: { kind: 'user', name: 'alice', admin: false }, via: 'test', address: '127.0.0.1' };
  const operator: Actor = { kind: 'operator', name: 'root', via: 'test' };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-management-'));
    const coordination = localCoordination();
    const storage = createStorage(new FilesystemDriver(dir), undefined, coordination);
    const accounts = new AccountStore(storage.driver, coordination.lock);
    const audit = new AuditLog({ info: (fields) => lines.push((fields as { audit: AuditEvent }).audit) });
    management = new AccountManagement(accounts, audit, storage.policies, storage.quotas);
    await management.addUser(operator, 'alice', 'alice-password-1', false);
    await management.addOrganisation(operator, 'acme', 'alice');
  });

  after(() => rm(dir, { recursive: true, force: true }));

  it(`keeps at most ${MAX_LIVE_CREDENTIALS} live tokens per user and robots per namespace; revoking makes room`, async () => {
    const secrets: string[] = [];
    for (let i = 0; i < MAX_LIVE_CREDENTIALS; i++) secrets.push((await management.createToken(alice, 'alice', { description: `t${i}` })).secret);
    const refused = await management.createToken(alice, 'alice', {}).catch((err: unknown) => err);
    expect(refused).to.be.instanceOf(AccountError).with.property('refusal', 'denied');
    const first = (await management.tokens(alice, 'alice'))[0]!;
    await management.revokeToken(alice, 'alice', first.id);
    await management.createToken(alice, 'alice', {});

    for (let i = 0; i < MAX_LIVE_CREDENTIALS; i++) await management.createRobot(alice, 'acme', { name: `r${i}` });
    expect(await management.createRobot(alice, 'acme', { name: 'one-more' }).catch((err: unknown) => err)).to.be.instanceOf(AccountError).with.property('refusal', 'denied');

    const refusals = lines.filter((l) => !l.allowed);
    expect(refusals.map((l) => l.action)).to.include.members(['token create for alice', 'robot create acme+one-more']);
    expect(refusals.every((l) => l.who === 'alice' && l.address === '127.0.0.1')).to.equal(true);
    const logged = JSON.stringify(lines);
    for (const secret of secrets) expect(logged).not.to.include(secret.split('.').pop()!);
  });

  it('hides a namespace from who does not manage it, and refuses a quota change to its managers', async () => {
    const bob: Actor = { kind: 'principal', principal: { kind: 'user', name: 'bob', admin: false }, via: 'test' };
    expect(await management.robots(bob, 'acme').catch((err: unknown) => err)).to.have.property('refusal', 'unknown');
    await management.setPolicy(operator, 'acme', { quotaBytes: 1000 });
    expect(await management.setPolicy(alice, 'acme', { immutableTags: ['v*'] }).catch((err: unknown) => err)).to.have.property('refusal', 'denied');
    expect(await management.setPolicy(alice, 'acme', { immutableTags: ['v*'], quotaBytes: 1000 })).to.deep.equal({ immutableTags: ['v*'], quotaBytes: 1000 });
    expect(await management.removePolicy(alice, 'acme').catch((err: unknown) => err)).to.have.property('refusal', 'denied');
    expect(await management.policy(alice, '../etc').catch((err: unknown) => err)).to.have.property('refusal', 'invalid');
  });
});
