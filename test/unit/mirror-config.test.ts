// `mirrors` (BERTH_MIRRORS or the file's key): parsed and checked at start-up; an error names the entry
// and never shows a password.
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../../server/config.ts';

function failure(mirrors: unknown): string {
  try {
    loadConfig({ BERTH_MIRRORS: JSON.stringify(mirrors) });
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('the configuration was accepted');
}

describe('configuration: mirrors', () => {
  it('reads BERTH_MIRRORS as JSON, with defaults, and the config file\'s mirrors key as a list', () => {
    expect(loadConfig({}).mirrors).to.deep.equal([]);
    const [hub] = loadConfig({ BERTH_MIRRORS: '[{"prefix":"docker.io","upstream":"https://registry-1.docker.io/","dockerMirror":true,"realms":["https://auth.docker.io"]}]' }).mirrors;
    expect(hub).to.deep.equal({
      prefix: 'docker.io',
      upstream: 'https://registry-1.docker.io',
      realms: ['https://auth.docker.io'],
      tagTtlSeconds: 300,
      dockerMirror: true,
      timeoutSeconds: 30,
    });
    const dir = mkdtempSync(join(tmpdir(), 'berth-config-'));
    try {
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ mirrors: [{ prefix: 'ghcr.io', upstream: 'https://ghcr.io', maxBytes: 1e9, tagTtlSeconds: 60 }] }));
      const [ghcr] = loadConfig({ BERTH_CONFIG: join(dir, 'config.json') }).mirrors;
      expect(ghcr).to.include({ prefix: 'ghcr.io', maxBytes: 1e9, tagTtlSeconds: 60 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses what would not work, naming the entry', () => {
    expect(failure('not json')).to.match(/^invalid configuration:\n {2}BERTH_MIRRORS: /);
    expect(failure([{ prefix: 'Docker.IO', upstream: 'https://x.io' }])).to.include('BERTH_MIRRORS[0][prefix]');
    expect(failure([{ prefix: 'a', upstream: 'ftp://x.io' }])).to.include('BERTH_MIRRORS[0][upstream]');
    expect(failure([{ prefix: 'a', upstream: 'https://x.io/v2/' }])).to.include('only a scheme and host');
    expect(failure([{ prefix: 'a', upstream: 'https://x.io', unknown: 1 }])).to.include('BERTH_MIRRORS[0]');
    expect(failure([{ prefix: 'a', upstream: 'https://x.io' }, { prefix: 'a/b', upstream: 'https://y.io' }])).to.include('prefix a/b overlaps a');
    expect(failure([{ prefix: 'a', upstream: 'https://x.io', dockerMirror: true }, { prefix: 'b', upstream: 'https://y.io', dockerMirror: true }])).to.include('at most one mirror');
    expect(failure([{ prefix: 'a', upstream: 'https://x.io', username: 'u' }])).to.include('username and password go together');
  });

  it('never shows a password in an error', () => {
    const message = failure([{ prefix: 'a', upstream: 'https://x.io', username: 'u', password: 's3cret-value', tagTtlSeconds: -1 }]);
    expect(message).to.include('BERTH_MIRRORS[0][tagTtlSeconds]');
    expect(message).not.to.include('s3cret-value');
  });
});
