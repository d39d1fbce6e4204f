// The account settings: the reserved names and the failed-login limits, validated like every setting.
import { expect } from 'chai';
import { ConfigError, loadConfig } from '../../server/config.ts';

describe('configuration: accounts', () => {
  it('reserves the registry\'s own words by default, and takes a list of its own', () => {
    expect(loadConfig({}).reservedNames).to.include.members(['library', 'admin', 'api', 'v2', 'token', 'static']);
    expect(loadConfig({ BERTH_RESERVED_NAMES: 'library,corp' }).reservedNames).to.deep.equal(['library', 'corp']);
  });

  it('refuses a reserved-names list that is not lower-case names separated by commas, naming the variable', () => {
    for (const value of ['Corp', 'a,,b', 'a b', 'a/b']) {
      expect(() => loadConfig({ BERTH_RESERVED_NAMES: value }), value).to.throw(ConfigError, /BERTH_RESERVED_NAMES/);
    }
  });

  it('counts failed logins per account and address (10), per account (10) and per address (50) by default', () => {
    expect(loadConfig({})).to.include({ loginFailuresPerAccountAndAddress: 10, loginFailuresPerAccount: 10, loginFailuresPerAddress: 50 });
    expect(() => loadConfig({ BERTH_LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS: '0' })).to.throw(ConfigError, /BERTH_LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS/);
  });
});
