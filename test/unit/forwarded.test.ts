import { expect } from 'chai';
import { ConfigError, loadConfig } from '../../server/config.ts';
import { clientAddress, proxyTrust } from '../../server/forwarded.ts';

const trust = (env: Record<string, string>) => proxyTrust(loadConfig({ BERTH_TRUST_PROXY: 'true', ...env }));

describe('the client address behind trusted proxies (X-Forwarded-For)', () => {
  it('without BERTH_TRUST_PROXY, X-Forwarded-For is not read at all', () => {
    expect(clientAddress(proxyTrust(loadConfig({})), '10.0.0.9', '192.0.2.1')).to.deep.equal({ address: '10.0.0.9', forwarded: false });
  });

  it('one hop (the default): the rightmost entry, which our proxy appended; what the client sent on its left is ignored', () => {
    const oneHop = trust({});
    expect(clientAddress(oneHop, '10.0.0.9', '198.51.100.66, 192.0.2.1').address).to.equal('192.0.2.1');
    expect(clientAddress(oneHop, '10.0.0.9', ['198.51.100.66', '192.0.2.1']).address, 'the header sent twice').to.equal('192.0.2.1');
    expect(clientAddress(oneHop, '10.0.0.9', undefined).address, 'no header: the peer').to.equal('10.0.0.9');
    expect(clientAddress(oneHop, '10.0.0.9', '192.0.2.1, unknown').address, 'not an address: the peer').to.equal('10.0.0.9');
    expect(clientAddress(oneHop, '::ffff:10.0.0.9', '::ffff:192.0.2.1').address).to.equal('192.0.2.1');
  });

  it('N hops: the entry N from the right', () => {
    const twoHops = trust({ BERTH_TRUSTED_PROXY_HOPS: '2' });
    expect(clientAddress(twoHops, '10.0.0.9', '198.51.100.66, 192.0.2.1, 10.1.1.1').address).to.equal('192.0.2.1');
  });

  it('trusted ranges: forwarded headers only from those peers; the rightmost entry that is not a proxy', () => {
    const ranges = trust({ BERTH_TRUSTED_PROXIES: '10.0.0.0/8, 2001:db8::/32' });
    expect(clientAddress(ranges, '192.0.2.50', '198.51.100.66')).to.deep.equal({ address: '192.0.2.50', forwarded: false });
    expect(clientAddress(ranges, '10.0.0.9', '198.51.100.66, 192.0.2.1, 10.3.3.3')).to.deep.equal({ address: '192.0.2.1', forwarded: true });
    expect(clientAddress(ranges, '2001:db8::1', '198.51.100.66, 2001:db9::5').address).to.equal('2001:db9::5');
    expect(clientAddress(ranges, '10.0.0.9', 'garbage, 10.2.2.2').address, 'a broken chain stops at the last proxy').to.equal('10.2.2.2');
  });

  it('refuses settings that do not hold together, naming the variable', () => {
    const fails = (env: Record<string, string>, pattern: RegExp) => expect(() => loadConfig(env)).to.throw(ConfigError, pattern);
    fails({ BERTH_TRUSTED_PROXIES: '10.0.0.0/8' }, /BERTH_TRUSTED_PROXIES: has no effect unless BERTH_TRUST_PROXY=true/);
    fails({ BERTH_TRUSTED_PROXY_HOPS: '2' }, /BERTH_TRUSTED_PROXY_HOPS: has no effect/);
    fails({ BERTH_TRUST_PROXY: 'true', BERTH_TRUSTED_PROXIES: '10.0.0.0/33' }, /BERTH_TRUSTED_PROXIES: expected addresses or CIDR ranges/);
    fails({ BERTH_TRUST_PROXY: 'true', BERTH_TRUSTED_PROXIES: 'proxy.internal' }, /BERTH_TRUSTED_PROXIES/);
    fails({ BERTH_TRUST_PROXY: 'true', BERTH_TRUSTED_PROXIES: '10.0.0.1', BERTH_TRUSTED_PROXY_HOPS: '2' }, /not both/);
    fails({ BERTH_TRUST_PROXY: 'true', BERTH_TRUSTED_PROXY_HOPS: '0' }, /BERTH_TRUSTED_PROXY_HOPS/);
    fails({ BERTH_BODY_TIMEOUT_SECONDS: '0' }, /BERTH_BODY_TIMEOUT_SECONDS/);
    fails({ BERTH_HEADERS_TIMEOUT_SECONDS: 'soon' }, /BERTH_HEADERS_TIMEOUT_SECONDS/);
  });
});
