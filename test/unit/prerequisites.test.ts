// `npm test` on a fresh machine: test/prerequisites.mjs runs first and either installs what the suite
// drives or stops at once naming it.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const script = join(import.meta.dirname, '..', 'prerequisites.mjs');

function prerequisites(args: string[], env: Record<string, string> = {}, asNobody = false) {
  const started = Date.now();
  const command = asNobody ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, script, ...args] : [process.execPath, script, ...args];
  const out = spawnSync(command[0]!, command.slice(1), { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
  return { status: out.status, output: `${out.stdout}${out.stderr}`, seconds: (Date.now() - started) / 1000 };
}

describe('npm test prerequisites (test/prerequisites.mjs)', () => {
  it('finds everything the suite drives on a machine that has it, and says nothing', () => {
    const { status, output, seconds } = prerequisites(['--check']);
    expect(output).to.equal('');
    expect(status).to.equal(0);
    expect(seconds).to.be.below(10);
  });

  it('without root or a password-less sudo, stops within seconds naming the missing package and the command', () => {
    const { status, output, seconds } = prerequisites([], { BERTH_TEST_EXTRA_PACKAGES: 'berth-no-such-package' }, true);
    expect(status, output).to.equal(1);
    expect(seconds).to.be.below(10);
    expect(output).to.include('these packages are missing: berth-no-such-package\n');
    expect(output).to.include("sudo sh -c 'apt-get update && apt-get install -y berth-no-such-package'");
    // Nothing else is named: the packages this machine has are not.
    expect(output).not.to.include('skopeo');
  });

  it('--check reports instead of installing, even as root', () => {
    const { status, output } = prerequisites(['--check'], { BERTH_TEST_EXTRA_PACKAGES: 'berth-no-such-package another-missing-one' });
    expect(status).to.equal(1);
    expect(output).to.include('these packages are missing: berth-no-such-package another-missing-one\n');
    expect(output).not.to.include('installing');
  });
});
