#!/usr/bin/env node
// Run by `npm test` before anything else, with Node alone (nothing installed yet): the suite drives real
// clients and services, so on a fresh machine it first makes sure they are there. It installs what is
// missing where it may (root, or a sudo that asks no password); anywhere else it stops within seconds with
// one message naming the missing packages and the command that installs them, instead of failing tests
// minutes later. `--check` only reports.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

// Debian packages, and a command each provides (checked on machines without dpkg). skopeo, a Docker
// engine, podman (with runc, which `berth run` uses too), buildah and umoci (images as they build them, for
// `berth run`), busybox for test images, zstd for a test layer;
// Chromium and a font for the catalog's browser tests and social cards; CNCF Distribution with an
// htpasswd file (apache2-utils); docker-credential-pass over pass and GnuPG for the client's tests; OpenLDAP
// (slapd, and ldap-utils to change its entries) for sign-in through a directory.
const PACKAGES = [
  ['skopeo', 'skopeo'],
  ['podman', 'podman'],
  ['buildah', 'buildah'],
  ['umoci', 'umoci'],
  ['netavark', undefined],
  ['conmon', 'conmon'],
  ['runc', 'runc'],
  ['uidmap', 'newuidmap'],
  ['docker.io', 'dockerd'],
  ['containerd', 'containerd'],
  ['busybox-static', 'busybox'],
  ['redis-server', 'redis-server'],
  ['zstd', 'zstd'],
  ['chromium', 'chromium'],
  ['fonts-dejavu-core', undefined],
  ['docker-registry', 'docker-registry'],
  ['apache2-utils', 'htpasswd'],
  ['gnupg', 'gpg'],
  ['pass', 'pass'],
  ['golang-docker-credential-helpers', 'docker-credential-pass'],
  ['slapd', 'slapd'],
  ['ldap-utils', 'ldapmodify'],
];

const checkOnly = process.argv.includes('--check');
// Names added by the suite's own test of this script (a package no machine has).
const extra = (process.env.BERTH_TEST_EXTRA_PACKAGES ?? '').split(/[\s,]+/).filter(Boolean).map((p) => [p, p]);
const packages = [...PACKAGES, ...extra];

const run = (cmd, args, options = {}) => spawnSync(cmd, args, { stdio: 'inherit', ...options });
const works = (cmd, args) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
const hasDpkg = works('dpkg-query', ['--version']);

function isInstalled([pkg, command]) {
  if (hasDpkg) {
    const out = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
    return out.status === 0 && out.stdout.includes('install ok installed');
  }
  return command === undefined || works('sh', ['-c', `command -v '${command}'`]);
}

function fail(message) {
  console.error(`\nnpm test cannot run here yet: ${message}\n`);
  process.exit(1);
}

// Node packages first: a fresh clone has none, and the type check needs them.
if (!existsSync(join(root, 'node_modules', '.package-lock.json'))) {
  if (checkOnly) fail('the Node packages are not installed. Install them with:\n\n    npm ci');
  console.log('installing the Node packages: npm ci');
  if (run('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root }).status !== 0) fail('`npm ci` failed (see above).');
}

const missing = packages.filter((p) => !isInstalled(p)).map(([pkg]) => pkg);
if (missing.length > 0) {
  const command = `apt-get update && apt-get install -y ${missing.join(' ')}`;
  const asRoot = process.getuid?.() === 0;
  const sudo = !asRoot && works('sudo', ['-n', 'true']);
  const apt = hasDpkg && works('apt-get', ['--version']);
  if (checkOnly || !apt || (!asRoot && !sudo)) {
    const how = apt ? `Install them with:\n\n    sudo sh -c '${command}'` : 'Install them with your package manager (these are Debian package names).';
    fail(`the tests drive real clients and services, and these packages are missing: ${missing.join(' ')}\n${how}`);
  }
  console.log(`installing the packages the tests drive: ${missing.join(' ')}`);
  const prefix = asRoot ? [] : ['sudo', '-n'];
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const [first, ...rest] = [...prefix, 'apt-get'];
  if (run(first, [...rest, 'update', '-qq'], { env }).status !== 0 || run(first, [...rest, 'install', '-y', '-qq', ...missing], { env }).status !== 0) {
    fail(`installing failed (see above). The command was:\n\n    ${command}`);
  }
}
