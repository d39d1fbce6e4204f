// Registry authentication as docker does it: the Bearer token flow against a real Berth in public-index
// mode (anonymous and with `berth login` credentials, one token per scope, docker's own config.json), and
// Basic challenges against a real CNCF Distribution with an htpasswd file.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAuthChallenges } from '../../client/index.ts';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { addUser, cli } from '../helpers/auth.ts';
import { addImage, berthCli, clientHome } from '../helpers/berth-client.ts';
import { busyboxImage } from '../helpers/busybox.ts';
import { removeDir, Skopeo, tempDir } from '../helpers/clients.ts';
import { startDistribution, type TestDistribution } from '../helpers/distribution.ts';
import { hostArchitecture, makeLayer, OciLayout } from '../helpers/oci-layout.ts';

describe('client: registry authentication', function () {
  this.timeout(120_000);

  let berth: TestBerth;
  let work: string;
  let layoutDir: string;
  const homes: string[] = [];
  const PASSWORD = 'correct horse';

  /** The token requests Berth granted since `from` (its audit log): who asked, for which repository. */
  function tokenGrants(from: number): Array<{ who: string; repository: string; action: string }> {
    return readFileSync(join(work, 'audit.log'), 'utf8')
      .trim()
      .split('\n')
      .slice(from)
      .map((line) => JSON.parse(line).audit)
      .filter((a) => a.repository !== undefined && a.granted !== undefined);
  }
  const auditLines = () => readFileSync(join(work, 'audit.log'), 'utf8').trim().split('\n').length;

  function home(): string {
    const dir = clientHome();
    homes.push(dir);
    return dir;
  }

  before(async function () {
    work = tempDir('client-auth');
    berth = await startBerth({ env: { BERTH_MODE: 'public-index', BERTH_AUDIT_LOG: join(work, 'audit.log') } });
    await addUser(berth, 'alice', PASSWORD);
    await cli(berth, ['repo', 'visibility', 'alice/private', 'private']);
    const skopeo = new Skopeo();
    try {
      const layout = new OciLayout(join(work, 'layout'));
      const busybox = await busyboxImage('client-auth');
      const extra = await makeLayer([{ path: 'second-layer', content: 'two layers, one token\n' }]);
      const manifest = addImage(layout, [busybox.layer, extra], { architecture: hostArchitecture(), os: 'linux', config: { Env: ['PATH=/bin'] } });
      layout.writeIndexJson({ '1': manifest });
      layoutDir = layout.dir;
      for (const repo of ['alice/private', 'alice/public']) {
        await skopeo.run(['copy', '--dest-tls-verify=false', '--dest-creds', `alice:${PASSWORD}`, `oci:${layout.dir}:1`, `docker://${berth.host}/${repo}:1`]);
      }
    } finally {
      skopeo.cleanup();
    }
  });

  after(async function () {
    await berth?.destroy();
    if (work) removeDir(work);
    for (const dir of homes) removeDir(dir);
  });

  it('parses WWW-Authenticate challenges', function () {
    expect(parseAuthChallenges('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"')).to.deep.equal([
      { scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull' } },
    ]);
    expect(parseAuthChallenges('Basic realm="Registry Realm", Bearer realm=https://x/t,error="insufficient_scope"')).to.deep.equal([
      { scheme: 'basic', params: { realm: 'Registry Realm' } },
      { scheme: 'bearer', params: { realm: 'https://x/t', error: 'insufficient_scope' } },
    ]);
    expect(parseAuthChallenges('Bearer realm="a \\"quoted\\" realm"')[0]!.params.realm).to.equal('a "quoted" realm');
    expect(parseAuthChallenges('')).to.deep.equal([]);
  });

  describe('Bearer tokens (Berth\'s own token service)', function () {
    it('pulls a public repository with an anonymous token, asked once for the pull scope', async function () {
      const mark = auditLines();
      const result = await berthCli(home(), ['pull', `${berth.host}/alice/public:1`]);
      expect(result.code, result.stderr).to.equal(0);
      // One token for manifest, config and both layers: cached per scope.
      expect(tokenGrants(mark)).to.deep.equal([{ who: 'anonymous', action: 'pull', repository: 'alice/public', allowed: true, granted: ['pull'], address: '127.0.0.1' }]);
    });

    it('refuses a private repository without credentials, and says how to log in', async function () {
      const result = await berthCli(home(), ['pull', `${berth.host}/alice/private:1`]);
      expect(result.code).to.equal(1);
      expect(result.stderr).to.match(/401 UNAUTHORIZED: authentication required \(try berth login\)/);
    });

    it('logs in (credentials kept in a 0600 file), then pulls with a token asked with them', async function () {
      const store = home();
      const login = await berthCli(store, ['login', berth.host, '-u', 'alice', '--password-stdin'], { input: Buffer.from(`${PASSWORD}\n`) });
      expect(login.code, login.stderr).to.equal(0);
      expect(login.stdout).to.equal('Login Succeeded\n');
      const file = join(store, 'credentials.json');
      expect(statSync(file).mode & 0o777).to.equal(0o600);
      const saved = JSON.parse(readFileSync(file, 'utf8')) as { auths: Record<string, { auth: string }> };
      expect(Buffer.from(saved.auths[berth.host]!.auth, 'base64').toString()).to.equal(`alice:${PASSWORD}`);

      const mark = auditLines();
      const pulled = await berthCli(store, ['pull', `${berth.host}/alice/private:1`]);
      expect(pulled.code, pulled.stderr).to.equal(0);
      expect(tokenGrants(mark).map(({ who, repository, action }) => ({ who, repository, action }))).to.deep.equal([
        { who: 'alice', repository: 'alice/private', action: 'pull' },
      ]);
    });

    it('refuses a login with a wrong password and keeps nothing', async function () {
      const store = home();
      const login = await berthCli(store, ['login', berth.host, '-u', 'alice', '-p', 'wrong-password']);
      expect(login.code).to.equal(1);
      expect(login.stderr).to.match(/401 .*\(the credentials were refused\)/);
      expect(() => statSync(join(store, 'credentials.json'))).to.throw(/ENOENT/);
    });

    it('uses the credentials of docker\'s config.json', async function () {
      const dockerConfig = join(work, 'docker-config');
      mkdirSync(dockerConfig, { recursive: true });
      writeFileSync(
        join(dockerConfig, 'config.json'),
        JSON.stringify({ auths: { [`http://${berth.host}`]: { auth: Buffer.from(`alice:${PASSWORD}`).toString('base64') } } }),
      );
      const mark = auditLines();
      const pulled = await berthCli(home(), ['pull', `${berth.host}/alice/private:1`], { env: { DOCKER_CONFIG: dockerConfig } });
      expect(pulled.code, pulled.stderr).to.equal(0);
      expect(tokenGrants(mark).map((g) => g.who)).to.deep.equal(['alice']);
    });

    it('asks docker\'s credential helpers (credsStore, credHelpers): docker-credential-pass over a real pass store', async function () {
      // pass keeps the secret encrypted to a GnuPG key made for this test, in folders of its own.
      const gnupg = tempDir('gnupg');
      chmodSync(gnupg, 0o700);
      const env = { ...process.env, GNUPGHOME: gnupg, PASSWORD_STORE_DIR: tempDir('pass-store') };
      const run = (command: string, args: string[], input?: string) => {
        const result = spawnSync(command, args, { env, input, encoding: 'utf8' });
        expect(result.status, `${command} ${args.join(' ')}: ${result.stderr}`).to.equal(0);
        return result.stdout;
      };
      try {
        run('gpg', ['--batch', '--passphrase', '', '--quick-gen-key', 'berth-test@example.invalid', 'ed25519', 'cert,sign']);
        const fingerprint = /^fpr:+([0-9A-F]+):/m.exec(run('gpg', ['--list-keys', '--with-colons']))![1]!;
        run('gpg', ['--batch', '--passphrase', '', '--quick-add-key', fingerprint, 'cv25519', 'encr']);
        run('pass', ['init', fingerprint]);
        run('docker-credential-pass', ['store'], JSON.stringify({ ServerURL: berth.host, Username: 'alice', Secret: PASSWORD }));

        const pullWith = async (config: object) => {
          const dockerConfig = tempDir('docker-helper-config');
          writeFileSync(join(dockerConfig, 'config.json'), JSON.stringify(config));
          const mark = auditLines();
          const pulled = await berthCli(home(), ['pull', `${berth.host}/alice/private:1`], { env: { ...env, DOCKER_CONFIG: dockerConfig } });
          removeDir(dockerConfig);
          return { pulled, who: tokenGrants(mark).map((g) => g.who) };
        };
        for (const config of [{ credsStore: 'pass' }, { credsStore: 'none-such', credHelpers: { [berth.host]: 'pass' } }]) {
          const { pulled, who } = await pullWith(config);
          expect(pulled.code, `${JSON.stringify(config)}: ${pulled.stderr}`).to.equal(0);
          expect(who).to.deep.equal(['alice']);
        }
        // An identity token (Username "<token>"): Berth's refresh token, asked with offline_token=true.
        const offline = await fetch(`${berth.url}/token?service=${encodeURIComponent(berth.host)}&offline_token=true`, {
          headers: { Authorization: `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}` },
        });
        const refreshToken = ((await offline.json()) as { refresh_token: string }).refresh_token;
        run('docker-credential-pass', ['store'], JSON.stringify({ ServerURL: berth.host, Username: '<token>', Secret: refreshToken }));
        const withToken = await pullWith({ credsStore: 'pass' });
        expect(withToken.pulled.code, withToken.pulled.stderr).to.equal(0);
        expect(withToken.who).to.deep.equal(['alice']);

        // A helper that knows nothing of this registry: anonymous, and the private repository stays closed.
        run('docker-credential-pass', ['erase'], berth.host);
        const unknown = await pullWith({ credsStore: 'pass' });
        expect(unknown.pulled.code).to.not.equal(0);
        expect(unknown.who).to.deep.equal(['anonymous']);
        // A helper that is not installed is named, as docker names it.
        const missing = await pullWith({ credsStore: 'none-such' });
        expect(missing.pulled.code).to.not.equal(0);
        expect(missing.pulled.stderr).to.include('docker-credential-none-such, which is not installed');
      } finally {
        spawnSync('gpgconf', ['--kill', 'gpg-agent'], { env });
        removeDir(env.PASSWORD_STORE_DIR);
        removeDir(gnupg);
      }
    });
  });

  describe('Basic challenges (CNCF Distribution with htpasswd)', function () {
    let distribution: TestDistribution;

    before(async function () {
      distribution = await startDistribution({ users: { alice: PASSWORD } });
      const skopeo = new Skopeo();
      try {
        await skopeo.run(['copy', '--dest-tls-verify=false', '--dest-creds', `alice:${PASSWORD}`, `oci:${layoutDir}:1`, `docker://${distribution.host}/team/private:1`]);
      } finally {
        skopeo.cleanup();
      }
    });
    after(() => distribution?.stop());

    it('answers them with the stored credentials', async function () {
      const store = home();
      const anonymous = await berthCli(store, ['pull', `${distribution.host}/team/private:1`]);
      expect(anonymous.code).to.equal(1);
      expect(anonymous.stderr).to.match(/401/);
      const login = await berthCli(store, ['login', distribution.host, '-u', 'alice', '-p', PASSWORD]);
      expect(login.code, login.stderr).to.equal(0);
      const pulled = await berthCli(store, ['pull', `${distribution.host}/team/private:1`]);
      expect(pulled.code, pulled.stderr).to.equal(0);
    });
  });
});
