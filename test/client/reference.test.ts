// Image references as docker parses them, with a configurable default registry; and platform choice.
import { expect } from 'chai';
import { InvalidReferenceError, parsePlatform, parseReference, selectPlatform } from '../../client/index.ts';
import { PlatformError } from '../../client/errors.ts';
import { refuseForeignOs } from '../../client/platform.ts';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('client: references and platforms', function () {
  const cases: Array<[string, string, object]> = [
    ['busybox', 'docker.io', { registry: 'docker.io', repository: 'library/busybox', tag: 'latest' }],
    ['busybox:1.36', 'docker.io', { registry: 'docker.io', repository: 'library/busybox', tag: '1.36' }],
    ['docker.io/busybox', 'docker.io', { registry: 'docker.io', repository: 'library/busybox', tag: 'latest' }],
    ['index.docker.io/team/app:v1', 'docker.io', { registry: 'docker.io', repository: 'team/app', tag: 'v1' }],
    ['team/app', 'docker.io', { registry: 'docker.io', repository: 'team/app', tag: 'latest' }],
    ['localhost/app', 'docker.io', { registry: 'localhost', repository: 'app', tag: 'latest' }],
    ['localhost:5000/a/b/c:t', 'docker.io', { registry: 'localhost:5000', repository: 'a/b/c', tag: 't' }],
    ['registry.example.com/app@' + DIGEST, 'docker.io', { registry: 'registry.example.com', repository: 'app', digest: DIGEST }],
    ['127.0.0.1:5000/app:1@' + DIGEST, 'docker.io', { registry: '127.0.0.1:5000', repository: 'app', tag: '1', digest: DIGEST }],
    ['[::1]:5000/app', 'docker.io', { registry: '[::1]:5000', repository: 'app', tag: 'latest' }],
    // A configured default registry: one-part names get library/ there, qualified names stay as written.
    ['busybox', 'berth.example:5000', { registry: 'berth.example:5000', repository: 'library/busybox', tag: 'latest' }],
    ['team/app:2', 'berth.example:5000', { registry: 'berth.example:5000', repository: 'team/app', tag: '2' }],
    ['berth.example:5000/app', 'berth.example:5000', { registry: 'berth.example:5000', repository: 'app', tag: 'latest' }],
  ];
  for (const [text, defaultRegistry, expected] of cases) {
    it(`parses ${text} (default ${defaultRegistry})`, function () {
      expect(parseReference(text, defaultRegistry)).to.deep.equal(expected);
    });
  }

  it('refuses what is not a reference', function () {
    for (const bad of ['', 'UPPER', 'app:', 'app@sha256:short', 'a//b', 'app:-tag', '/app', 'app/', 'a b', `app:${'t'.repeat(129)}`]) {
      expect(() => parseReference(bad), JSON.stringify(bad)).to.throw(InvalidReferenceError);
    }
  });

  it('parses --platform values', function () {
    expect(parsePlatform('linux/arm64/v8')).to.deep.equal({ os: 'linux', architecture: 'arm64', variant: 'v8' });
    expect(parsePlatform('linux/x86_64')).to.deep.equal({ os: 'linux', architecture: 'amd64' });
    for (const bad of ['linux', 'linux/', 'a/b/c/d', 'Linux/AMD64']) expect(() => parsePlatform(bad), bad).to.throw(PlatformError);
  });

  it('picks the closest platform from an index', function () {
    const entries = [
      { name: 'arm-v6', platform: { os: 'linux', architecture: 'arm', variant: 'v6' } },
      { name: 'arm-v7', platform: { os: 'linux', architecture: 'arm', variant: 'v7' } },
      { name: 'arm64', platform: { os: 'linux', architecture: 'arm64' } },
      { name: 'amd64', platform: { os: 'linux', architecture: 'amd64' } },
      { name: 'win', platform: { os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763.1' } },
    ];
    expect(selectPlatform(entries, { os: 'linux', architecture: 'amd64' }, 'x').name).to.equal('amd64');
    expect(selectPlatform(entries, { os: 'linux', architecture: 'arm', variant: 'v7' }, 'x').name).to.equal('arm-v7');
    expect(selectPlatform(entries, { os: 'linux', architecture: 'arm64', variant: 'v8' }, 'x').name).to.equal('arm64');
    expect(selectPlatform(entries, { os: 'windows', architecture: 'amd64' }, 'x').name).to.equal('win');
    expect(() => selectPlatform(entries, { os: 'linux', architecture: 'arm', variant: 'v5' }, 'x')).to.throw(PlatformError, /no manifest for linux\/arm\/v5/);
  });

  it('lets a host run only its own OS, and tells a Windows host which isolation an image needs', function () {
    const linux = { os: 'linux', architecture: 'amd64' };
    const windows = (v: string) => ({ os: 'windows', architecture: 'amd64', 'os.version': v });
    expect(() => refuseForeignOs('img', linux, linux)).to.not.throw();
    expect(() => refuseForeignOs('img', windows('10.0.17763.1'), linux)).to.throw(
      PlatformError,
      'img is a Windows image (os windows, os.version 10.0.17763.1 (Windows Server 2019)): Linux hosts cannot run Windows containers',
    );
    expect(() => refuseForeignOs('img', windows('10.0.20348.1'), windows('10.0.26100'))).to.throw(PlatformError, /runs with process isolation on host 10\.0\.26100/);
    expect(() => refuseForeignOs('img', windows('10.0.17763.1'), windows('10.0.20348'))).to.throw(PlatformError, /needs Hyper-V isolation/);
    expect(() => refuseForeignOs('img', windows('10.0.26100.1'), windows('10.0.17763'))).to.throw(PlatformError, /newer than host/);
    expect(() => refuseForeignOs('img', linux, windows('10.0.20348'))).to.throw(PlatformError, /a linux image; this host runs windows containers/);
  });
});
