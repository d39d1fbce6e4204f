// Registry authentication as docker does it, against a real Berth behind an authenticating front
// (test/helpers/token-gate.ts): the Bearer token flow, anonymous and with `berth login` credentials,
// tokens cached per scope, Basic challenges, and docker's own config.json credentials.
import { expect } from 'chai';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAuthChallenges } from '../../client/index.ts';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { addImage, berthCli, clientHome } from '../helpers/berth-client.ts';
import { busyboxImage } from '../helpers/busybox.ts';
import { removeDir, Skopeo, tempDir } from '../helpers/clients.ts';
import { hostArchitecture, makeLayer, OciLayout } from '../helpers/oci-layout.ts';
import { startTokenGate, type TokenGate } from '../helpers/token-gate.ts';

describe('client: registry authentication', function () {
  this.timeout(120_000);

  let berth: TestBerth;
  let work: string;
  const homes: string[] = [];
  const USERS = { alice: 'correct horse' };

  function home(): string {
    const dir = clientHome();
    homes.push(dir);
    return dir;
  }

  before(async function () {
    berth = await startBerth();
    work = tempDir('client-auth');
    const skopeo = new Skopeo();
    try {
      const layout = new OciLayout(join(work, 'layout'));
      const busybox = await busyboxImage('client-auth');
      const extra = await makeLayer([{ path: 'second-layer', content: 'two layers, one token\n' }]);
      const manifest = addImage(layout, [busybox.layer, extra], { architecture: hostArchitecture(), os: 'linux', config: { Env: ['PATH=/bin'] } });
      layout.writeIndexJson({ '1': manifest });
      for (const repo of ['team/private', 'team/public']) {
        await skopeo.run(['copy', '--dest-tls-verify=false', `oci:${layout.dir}:1`, `docker://${berth.host}/${repo}:1`]);
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

  describe('Bearer tokens', function () {
    let gate: TokenGate;

    before(async function () {
      gate = await startTokenGate({ upstream: berth.url, mode: 'bearer', users: USERS, publicRepositories: ['team/public'] });
    });
    after(() => gate?.close());

    it('pulls a public repository with an anonymous token, asked once for the pull scope', async function () {
      gate.tokenRequests.length = 0;
      const result = await berthCli(home(), ['pull', `${gate.host}/team/public:1`]);
      expect(result.code, result.stderr).to.equal(0);
      // One token for manifest, config and both layers: cached per scope.
      expect(gate.tokenRequests).to.deep.equal([{ scope: 'repository:team/public:pull', service: 'berth-test' }]);
    });

    it('refuses a private repository without credentials, and says how to log in', async function () {
      const result = await berthCli(home(), ['pull', `${gate.host}/team/private:1`]);
      expect(result.code).to.equal(1);
      expect(result.stderr).to.match(/401 UNAUTHORIZED: authentication required \(try berth login\)/);
    });

    it('logs in (credentials kept in a 0600 file), then pulls with a token asked with them', async function () {
      const store = home();
      const login = await berthCli(store, ['login', gate.host, '-u', 'alice', '--password-stdin'], { input: Buffer.from('correct horse\n') });
      expect(login.code, login.stderr).to.equal(0);
      expect(login.stdout).to.equal('Login Succeeded\n');
      const file = join(store, 'credentials.json');
      expect(statSync(file).mode & 0o777).to.equal(0o600);
      const saved = JSON.parse(readFileSync(file, 'utf8')) as { auths: Record<string, { auth: string }> };
      expect(Buffer.from(saved.auths[gate.host]!.auth, 'base64').toString()).to.equal('alice:correct horse');

      gate.tokenRequests.length = 0;
      const pulled = await berthCli(store, ['pull', `${gate.host}/team/private:1`]);
      expect(pulled.code, pulled.stderr).to.equal(0);
      expect(gate.tokenRequests).to.deep.equal([{ scope: 'repository:team/private:pull', service: 'berth-test', user: 'alice' }]);
    });

    it('refuses a login with a wrong password and keeps nothing', async function () {
      const store = home();
      const login = await berthCli(store, ['login', gate.host, '-u', 'alice', '-p', 'wrong']);
      expect(login.code).to.equal(1);
      expect(login.stderr).to.match(/401 .*\(the credentials were refused\)/);
      expect(() => statSync(join(store, 'credentials.json'))).to.throw(/ENOENT/);
    });

    it('uses the credentials of docker\'s config.json', async function () {
      const dockerConfig = join(work, 'docker-config');
      mkdirSync(dockerConfig, { recursive: true });
      writeFileSync(
        join(dockerConfig, 'config.json'),
        JSON.stringify({ auths: { [`http://${gate.host}`]: { auth: Buffer.from('alice:correct horse').toString('base64') } } }),
      );
      gate.tokenRequests.length = 0;
      const pulled = await berthCli(home(), ['pull', `${gate.host}/team/private:1`], { env: { DOCKER_CONFIG: dockerConfig } });
      expect(pulled.code, pulled.stderr).to.equal(0);
      expect(gate.tokenRequests.map((r) => r.user)).to.deep.equal(['alice']);
    });
  });

  describe('Basic challenges', function () {
    let gate: TokenGate;

    before(async function () {
      gate = await startTokenGate({ upstream: berth.url, mode: 'basic', users: USERS });
    });
    after(() => gate?.close());

    it('answers them with the stored credentials', async function () {
      const store = home();
      const anonymous = await berthCli(store, ['pull', `${gate.host}/team/private:1`]);
      expect(anonymous.code).to.equal(1);
      expect(anonymous.stderr).to.match(/401/);
      const login = await berthCli(store, ['login', gate.host, '-u', 'alice', '-p', 'correct horse']);
      expect(login.code, login.stderr).to.equal(0);
      const pulled = await berthCli(store, ['pull', `${gate.host}/team/private:1`]);
      expect(pulled.code, pulled.stderr).to.equal(0);
      expect(gate.tokenRequests).to.deep.equal([]);
    });
  });
});
