// The Windows compatibility rule over the real builds: every image build against every host build.
import { expect } from 'chai';
import { parseWindowsVersion, windowsBaseImage, windowsCompatibility, windowsHostsFor, windowsName, WindowsVersionError } from '../../platform/index.ts';

const BUILDS = [14393, 17763, 20348, 22621, 26100] as const;

// Rows: host build; columns: image build (in BUILDS order). P process isolation, H Hyper-V only, - cannot run.
const EXPECTED: Record<(typeof BUILDS)[number], string> = {
  14393: 'P - - - -',
  17763: 'H P - - -',
  20348: 'H H P - -',
  22621: 'H H P P -',
  26100: 'H H P P P',
};

const LETTER = { process: 'P', hyperv: 'H' } as const;

describe('platform/windows: isolation verdicts', function () {
  for (const host of BUILDS) {
    const row = EXPECTED[host].split(' ');
    BUILDS.forEach((image, i) => {
      it(`image 10.0.${image} on host 10.0.${host}: ${row[i]}`, function () {
        // A revision on either side never changes the answer.
        const verdict = windowsCompatibility(`10.0.${image}.5329`, `10.0.${host}.1`);
        expect(verdict.isolation ? LETTER[verdict.isolation] : '-').to.equal(row[i]);
        expect(windowsCompatibility(`10.0.${image}`, `10.0.${host}.9999`).isolation).to.equal(verdict.isolation);
        expect(verdict.reason).to.be.a('string').and.not.equal('');
      });
    });
  }

  it('refuses a different major.minor whatever the build', function () {
    const verdict = windowsCompatibility('6.3.17763', '10.0.17763');
    expect(verdict.isolation).to.equal(null);
    expect(verdict.reason).to.match(/major\.minor/);
  });

  it('names the well-known builds', function () {
    expect(windowsName('10.0.14393.0')).to.equal('Windows Server 2016');
    expect(windowsName('10.0.17763.5329')).to.equal('Windows Server 2019');
    expect(windowsName('10.0.20348')).to.equal('Windows Server 2022');
    expect(windowsName('10.0.22621.1')).to.equal('Windows 11 22H2');
    expect(windowsName('10.0.26100.2')).to.equal('Windows Server 2025');
    expect(windowsName('10.0.19041')).to.equal(undefined);
  });

  it('lists, for one image, the verdict of every well-known host', function () {
    const hosts = windowsHostsFor('10.0.20348.2113');
    expect(hosts.map((h) => `${h.name}:${h.verdict.isolation ?? '-'}`)).to.deep.equal([
      'Windows Server 2016:-',
      'Windows Server 2019:-',
      'Windows Server 2022:process',
      'Windows 11 22H2:process',
      'Windows Server 2025:process',
    ]);
  });

  it('refuses what is not a version', function () {
    for (const bad of ['', '10', '10.0', 'ten.0.1', '10.0.17763.1.2', '10.0.-1']) {
      expect(() => parseWindowsVersion(bad), bad).to.throw(WindowsVersionError);
    }
    expect(parseWindowsVersion('10.0.17763.5329')).to.deep.equal({ major: 10, minor: 0, build: 17763, revision: 5329 });
  });
});

describe('platform/windows: the base image of a foreign layer', function () {
  it('reads servercore, nanoserver and server from the registry path of the URL, and nothing else', function () {
    expect(windowsBaseImage('https://mcr.microsoft.com/v2/windows/servercore/blobs/sha256:' + 'a'.repeat(64))).to.equal('servercore');
    expect(windowsBaseImage('https://mcr.microsoft.com/v2/windows/nanoserver/blobs/sha256:' + 'b'.repeat(64))).to.equal('nanoserver');
    expect(windowsBaseImage('https://mcr.microsoft.com/v2/windows/server/blobs/sha256:' + 'c'.repeat(64))).to.equal('server');
    expect(windowsBaseImage('https://go.microsoft.com/fwlink/?linkid=837858')).to.equal(undefined);
    expect(windowsBaseImage('https://mirror.example/v2/windows/blobs/servercore')).to.equal(undefined);
    expect(windowsBaseImage('https://example.com/windowsservercore/x')).to.equal(undefined);
    expect(windowsBaseImage('not a url at all')).to.equal(undefined);
  });
});
