// docker login with a personal access token made after an OpenID sign-in in the browser (the only way a
// provider's user reaches the registry from the command line), then push and pull through the role their
// provider groups give; once the provider no longer has the user, the token stops at the next refresh.
import { expect } from 'chai';
import type { TestBerth } from '../helpers/berth.ts';
import { busyboxImage } from '../helpers/busybox.ts';
import { startDockerd, type DockerEngine } from '../helpers/clients.ts';
import { signInThroughProvider, startBerthWithOidc, startOidcProvider, tokenFromSession, type ProviderUser, type TestOidc } from '../helpers/oidc.ts';
import { waitFor } from '../helpers/wait.ts';

describe('e2e: docker login with a token made after an OpenID sign-in', function () {
  this.timeout(180_000);
  let oidc: TestOidc;
  let berth: TestBerth;
  let engine: DockerEngine;
  const users = new Map<string, ProviderUser>([['sub-dave', { username: 'dave', name: 'Dave', email: 'dave@example.org', groups: ['dev'] }]]);

  before(async function () {
    oidc = await startOidcProvider(users);
    berth = await startBerthWithOidc(oidc);
    engine = await startDockerd({ insecureRegistries: [berth.host] });
  });

  after(async () => {
    await engine?.stop();
    await berth?.destroy();
    await oidc?.stop();
  });

  it('logs in with the token, pushes to the organisation the groups grant, pulls back; the token dies with the account', async function () {
    const { browser, status } = await signInThroughProvider(berth, oidc, 'sub-dave');
    expect(status).to.equal(200);
    const secret = await tokenFromSession(berth, browser, 'dave');
    const ref = `${berth.host}/acme/app:1`;
    const image = await busyboxImage('oidc');
    await engine.docker(['load'], { input: await image.archive([ref]) });

    const login = await engine.docker(['login', '--username', 'dave', '--password-stdin', berth.host], { input: Buffer.from(secret) });
    expect(login.stdout).to.include('Login Succeeded');
    await engine.docker(['push', ref]);
    await engine.docker(['rmi', ref]);
    await engine.docker(['pull', ref]);
    const ran = await engine.docker(['run', '--rm', '--network', 'none', ref, 'echo', 'hello']);
    expect(ran.stdout.trim()).to.equal('hello');

    users.delete('sub-dave');
    await engine.docker(['logout', berth.host]);
    await waitFor(async () => {
      const again = await engine.docker(['login', '--username', 'dave', '--password-stdin', berth.host], { input: Buffer.from(secret), allowFailure: true });
      return again.code !== 0;
    }, 'docker login refused once the provider no longer has the user', 15_000);
  });
});
