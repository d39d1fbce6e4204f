// docker's registry-mirrors against a Berth in private mode. What docker does, seen here with dockerd 20.10:
// - it sends a mirror the credentials it holds for Docker Hub (`auths["https://index.docker.io/v1/"]` in
//   the client's config.json, or a credential helper's for that key), never those of `docker login
//   <mirror host>`: the pull names a Docker Hub image, and the client hands the daemon that registry's
//   credentials, which the daemon uses for every endpoint of the pull, the mirror's included;
// - without them (or with ones the mirror refuses) the mirror's 401 makes it try the next endpoint,
//   Docker Hub itself (unreachable here: the pull then fails with Docker Hub's error);
// - `docker login` with no server checks the credentials against Docker Hub, never the mirror, so Berth's
//   credentials go into config.json by hand (or a credential helper), best a pull-only robot's.
// Berth's part: the token docker asks for names `library/busybox`; Berth grants the name the docker mirror
// serves it as (`hub/library/busybox`), to a caller who may pull that.
import { expect } from 'chai';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { addUser, cli } from '../helpers/auth.ts';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import type { BusyboxImage } from '../helpers/busybox.ts';
import { startDockerd, type DockerEngine } from '../helpers/clients.ts';
import type { TestDistribution } from '../helpers/distribution.ts';
import { mirrorsEnv, startBusyboxUpstream, upstreamRequests } from './helpers.ts';

/** The key docker's config.json keeps Docker Hub's credentials under (what `docker login` with no server writes). */
const DOCKER_HUB = 'https://index.docker.io/v1/';

describe("pull-through cache: docker's registry-mirrors with a private-mode Berth", function () {
  this.timeout(300_000);
  let upstream: TestDistribution;
  let berth: TestBerth;
  let image: BusyboxImage;
  let engine: DockerEngine;
  let robot: string;

  before(async () => {
    ({ upstream, image } = await startBusyboxUpstream('mirror-private'));
    berth = await startBerth({ env: { ...mirrorsEnv([{ prefix: 'hub', upstream: upstream.url, dockerMirror: true }]), BERTH_MODE: 'private' } });
    await addUser(berth, 'eve', 'eve-password-1');
    await cli(berth, ['org', 'add', 'hub']);
    robot = /token: (\S+)/.exec(await cli(berth, ['token', 'create', '--robot', 'hub+docker', '--scope', 'repository:hub/*:pull']))![1]!;
    engine = await startDockerd({ insecureRegistries: [berth.host], registryMirrors: [berth.url] });
  });
  after(async () => {
    await engine?.stop();
    await berth?.destroy();
    await upstream?.stop();
  });

  /** Sets (or removes) the credentials docker's client keeps for one registry key, as `docker login` would. */
  function storeCredentials(key: string, credentials?: [string, string]): void {
    const path = join(engine.configDir, 'config.json');
    const config = JSON.parse(readFileSync(path, 'utf8')) as { auths?: Record<string, unknown> };
    config.auths = { ...config.auths };
    if (credentials) config.auths[key] = { auth: Buffer.from(credentials.join(':')).toString('base64') };
    else delete config.auths[key];
    writeFileSync(path, JSON.stringify(config));
  }

  const logged = (from: number, path: string) =>
    berth.logs
      .slice(from)
      .filter((l) => l.includes(`"path":"${path}"`))
      .map((l) => JSON.parse(l) as { method: string; status: number; user?: string });

  it('without Docker Hub credentials: refused by the mirror (anonymous), docker falls back to Docker Hub itself', async () => {
    const from = berth.logs.length;
    const before = upstream.accessLog.length;
    const pull = await engine.docker(['pull', 'busybox:latest'], { allowFailure: true });
    expect(pull.code).to.not.equal(0);
    expect(pull.stderr).to.contain('registry-1.docker.io');
    expect(logged(from, '/token').map((e) => e.status)).to.deep.equal([401]);
    // dockerd's log quotes the mirror's URL with escaped quotes.
    expect(engine.log()).to.match(/Attempting next endpoint for pull after error: Head \\?"http:\/\/127\.0\.0\.1:\d+\/v2\/library\/busybox\/manifests\/latest\\?": unauthorized/);
    expect(upstreamRequests(upstream, before), 'the mirror never asked its upstream').to.deep.equal([]);
  });

  it('`docker login <mirror host>` alone does not help: docker sends the mirror no credentials for a Docker Hub image', async () => {
    const login = await engine.docker(['login', '--username', 'hub+docker', '--password-stdin', berth.host], { input: Buffer.from(robot) });
    expect(login.code).to.equal(0);
    const from = berth.logs.length;
    const pull = await engine.docker(['pull', 'busybox:latest'], { allowFailure: true });
    expect(pull.code).to.not.equal(0);
    expect(logged(from, '/token').map((e) => e.status), 'an anonymous token request').to.deep.equal([401]);
    await engine.docker(['logout', berth.host]);
  });

  it('refuses Docker Hub credentials of an account without pull on the prefix (docker falls back)', async () => {
    storeCredentials(DOCKER_HUB, ['eve', 'eve-password-1']);
    try {
      const from = berth.logs.length;
      const pull = await engine.docker(['pull', 'busybox:latest'], { allowFailure: true });
      expect(pull.code).to.not.equal(0);
      expect(logged(from, '/v2/library/busybox/manifests/latest').every((e) => e.status === 401)).to.equal(true);
    } finally {
      storeCredentials(DOCKER_HUB);
    }
  });

  it("pulls through with a pull-only robot of the prefix's organisation stored as docker's Docker Hub credentials", async () => {
    storeCredentials(DOCKER_HUB, ['hub+docker', robot]);
    try {
      const from = berth.logs.length;
      const logFrom = engine.log().length;
      await engine.docker(['pull', 'busybox:latest']);
      const id = (await engine.docker(['image', 'inspect', '--format', '{{.Id}}', 'busybox:latest'])).stdout.trim();
      expect(id).to.equal(image.configDigest);
      expect(logged(from, '/token').map((e) => e.status)).to.deep.include(200);
      const manifests = logged(from, '/v2/library/busybox/manifests/latest').filter((e) => e.status === 200);
      expect(manifests.length).to.be.greaterThan(0);
      expect(manifests.every((e) => e.user === 'hub+docker')).to.equal(true);
      expect(engine.log().slice(logFrom), 'no fallback to Docker Hub').to.not.contain('Attempting next endpoint');
    } finally {
      storeCredentials(DOCKER_HUB);
      await engine.docker(['image', 'rm', 'busybox:latest'], { allowFailure: true });
    }
  });
});
