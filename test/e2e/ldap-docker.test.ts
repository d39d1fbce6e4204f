// docker login with a directory password (a real slapd, over StartTLS), then push and pull through the
// role the user's directory group gives; a user the group does not name may pull nothing of it.
import { expect } from 'chai';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { busyboxImage } from '../helpers/busybox.ts';
import { startDockerd, type DockerEngine } from '../helpers/clients.ts';
import { groupDn, SERVICE_DN, SERVICE_PASSWORD, startLdap, SUFFIX, type DirectoryUser, type TestLdap } from '../helpers/ldap.ts';

const carol: DirectoryUser = { uid: 'carol', cn: 'Carol Cole', mail: 'carol@example.org', password: 'carol-directory-password' };
const mallory: DirectoryUser = { uid: 'mallory', cn: 'Mallory Moe', mail: 'mallory@example.org', password: 'mallory-directory-password' };

describe('e2e: docker login with a directory (LDAP) password', function () {
  this.timeout(180_000);
  let ldap: TestLdap;
  let berth: TestBerth;
  let engine: DockerEngine;

  before(async function () {
    ldap = await startLdap([carol, mallory], { dev: ['carol'] });
    berth = await startBerth({
      env: {
        BERTH_MODE: 'private',
        BERTH_LDAP_URL: ldap.url,
        BERTH_LDAP_START_TLS: 'true',
        BERTH_LDAP_CA_FILE: ldap.caFile,
        BERTH_LDAP_BIND_DN: SERVICE_DN,
        BERTH_LDAP_BIND_PASSWORD: SERVICE_PASSWORD,
        BERTH_LDAP_BASE_DN: `ou=people,${SUFFIX}`,
        BERTH_LDAP_GROUP_BASE_DN: `ou=groups,${SUFFIX}`,
        BERTH_LDAP_GROUP_ROLES: `${groupDn('dev')}=>acme:write`,
      },
    });
    engine = await startDockerd({ insecureRegistries: [berth.host] });
  });

  after(async () => {
    await engine?.stop();
    await berth?.destroy();
    await ldap?.destroy();
  });

  it('logs in with the directory password, pushes to the organisation the group grants, pulls back and runs', async function () {
    const ref = `${berth.host}/acme/tool:1`;
    const image = await busyboxImage('ldap');
    await engine.docker(['load'], { input: await image.archive([ref]) });
    const login = await engine.docker(['login', '--username', 'carol', '--password-stdin', berth.host], { input: Buffer.from(carol.password) });
    expect(login.stdout).to.include('Login Succeeded');
    await engine.docker(['push', ref]);
    await engine.docker(['rmi', ref]);
    await engine.docker(['pull', ref]);
    const ran = await engine.docker(['run', '--rm', '--network', 'none', ref, 'echo', 'from the directory']);
    expect(ran.stdout.trim()).to.equal('from the directory');
  });

  it('refuses a wrong password, and a directory user outside the group pulls nothing of the organisation', async function () {
    const wrong = await engine.docker(['login', '--username', 'carol', '--password-stdin', berth.host], { input: Buffer.from('not-her-password'), allowFailure: true });
    expect(wrong.code).to.not.equal(0);
    const login = await engine.docker(['login', '--username', 'mallory', '--password-stdin', berth.host], { input: Buffer.from(mallory.password) });
    expect(login.stdout).to.include('Login Succeeded');
    const pull = await engine.docker(['pull', `${berth.host}/acme/tool:1`], { allowFailure: true });
    expect(pull.code).to.not.equal(0);
    expect(pull.stderr).to.match(/denied|not found|unauthorized/i);
  });
});
