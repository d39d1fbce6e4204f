// Which webhook destinations are refused: the ranges, the allow-list, and the lookup handed to each
// connection, which checks every address a name resolves to at that moment (so a name that answered a
// public address when the endpoint was added and a private one later is refused then).
import { expect } from 'chai';
import type { LookupAddress } from 'node:dns';
import { DestinationPolicy, nonPublicRange } from '../../events/index.ts';
import { rangeList } from '../../server/config.ts';

describe('webhook destinations', function () {
  it('knows the non-public ranges', function () {
    const table: Array<[string, string | undefined]> = [
      ['10.1.2.3', 'private'],
      ['172.31.255.255', 'private'],
      ['172.32.0.1', undefined],
      ['192.168.0.1', 'private'],
      ['127.0.0.1', 'loopback'],
      ['127.8.9.10', 'loopback'],
      ['169.254.169.254', 'link-local'],
      ['100.64.0.1', 'shared (carrier-grade NAT)'],
      ['0.0.0.0', 'this network'],
      ['224.0.0.1', 'multicast'],
      ['255.255.255.255', 'reserved'],
      ['::1', 'loopback'],
      ['::', 'unspecified'],
      ['fe80::1', 'link-local'],
      ['fd00::1', 'unique local (private)'],
      ['::ffff:10.0.0.1', 'private'],
      ['::ffff:7f00:1', 'IPv4-mapped'],
      ['8.8.8.8', undefined],
      ['93.184.216.34', undefined],
      ['2606:4700:4700::1111', undefined],
    ];
    for (const [address, kind] of table) expect(nonPublicRange(address), address).to.equal(kind);
  });

  it('lets the allow-list name what would be refused, and nothing else', function () {
    const policy = new DestinationPolicy(rangeList('10.0.0.0/8,::1'));
    expect(policy.refusal('10.200.1.1')).to.equal(undefined);
    expect(policy.refusal('::1')).to.equal(undefined);
    expect(policy.refusal('192.168.1.1')).to.match(/is a private address/);
    expect(policy.refusal('127.0.0.1')).to.match(/is a loopback address/);
    expect(new DestinationPolicy().refusal('10.200.1.1')).to.match(/private/);
  });

  it('checks every address of a name, at adding and at each connection', async function () {
    let answers: LookupAddress[][] = [];
    const resolver = (_host: string, done: (err: Error | null, addresses: LookupAddress[]) => void) => done(null, answers.shift() ?? []);
    const policy = new DestinationPolicy(undefined, resolver);
    const lookup = (options: { all?: boolean; family?: number }) =>
      new Promise<{ err: Error | null; address: unknown }>((resolve) =>
        policy.lookup('hooks.example', options as never, (err: Error | null, address: unknown) => resolve({ err, address })),
      );

    // One public and one private address: the name is refused whole.
    answers = [[{ address: '93.184.216.34', family: 4 }, { address: '10.0.0.5', family: 4 }]];
    const mixed = await policy.check(new URL('http://hooks.example/')).then(() => undefined, (err: Error) => err);
    expect(mixed?.message).to.match(/10\.0\.0\.5 is a private address/);

    // Public when added, private at connection time (rebinding): the connection is refused.
    answers = [[{ address: '93.184.216.34', family: 4 }], [{ address: '127.0.0.1', family: 4 }]];
    await policy.check(new URL('http://hooks.example/'));
    const rebound = await lookup({ all: true });
    expect(rebound.err?.name).to.equal('WebhookError');
    expect(rebound.err?.message).to.match(/127\.0\.0\.1 is a loopback address/);

    // Public at connection: answered as asked (all addresses, or one).
    answers = [[{ address: '93.184.216.34', family: 4 }], [{ address: '93.184.216.34', family: 4 }]];
    expect((await lookup({ all: true })).address).to.deep.equal([{ address: '93.184.216.34', family: 4 }]);
    expect((await lookup({})).address).to.equal('93.184.216.34');
  });
});
