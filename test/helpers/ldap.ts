// A private OpenLDAP (Debian's slapd) for a test suite: its own folder with a slapd.conf, an mdb database
// filled by slapadd, a throwaway CA and server certificate made by openssl, and two loopback listeners
// (ldap:// with StartTLS, ldaps://). Never the system's slapd. Changes go through ldap-utils
// (ldapmodify, ldapdelete) as the directory's root, as an administrator would make them.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './redis.ts';
import { waitFor } from './wait.ts';

export const SUFFIX = 'dc=example,dc=org';
const ROOT_DN = `cn=root,${SUFFIX}`;
const ROOT_PASSWORD = 'root-secret';
export const SERVICE_DN = `cn=berth,ou=services,${SUFFIX}`;
export const SERVICE_PASSWORD = 'service-secret';
export const groupDn = (name: string) => `cn=${name},ou=groups,${SUFFIX}`;
export const userDn = (uid: string) => `uid=${uid},ou=people,${SUFFIX}`;

export interface DirectoryUser {
  uid: string;
  password: string;
  cn: string;
  mail: string;
}

export interface TestLdap {
  /** ldap://127.0.0.1:PORT (StartTLS offered) */
  url: string;
  /** ldaps://127.0.0.1:PORT */
  ldapsUrl: string;
  /** The PEM file of the CA that signed the server's certificate. */
  caFile: string;
  /** The PEM file of another CA, which signed nothing the server shows. */
  wrongCaFile: string;
  /** Runs ldapmodify as the directory's root with this LDIF. */
  modify(ldif: string): void;
  /** Deletes an entry as the directory's root. */
  remove(dn: string): void;
  addToGroup(group: string, uid: string): void;
  removeFromGroup(group: string, uid: string): void;
  /** Stops slapd (kill, wait for the exit) and starts it again on the same ports and data. */
  stop(): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
}

/** The certificates: a CA, a server certificate for 127.0.0.1 and localhost signed by it, and a stranger CA. */
function makeCertificates(dir: string): { ca: string; wrongCa: string; cert: string; key: string } {
  const path = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  for (const ca of ['ca', 'wrong-ca']) {
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=berth test ${ca}`, '-keyout', path(`${ca}.key`), '-out', path(`${ca}.pem`));
  }
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', path('server.key'), '-out', path('server.csr'));
  writeFileSync(path('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  openssl('x509', '-req', '-in', path('server.csr'), '-CA', path('ca.pem'), '-CAkey', path('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', path('server.ext'), '-out', path('server.pem'));
  return { ca: path('ca.pem'), wrongCa: path('wrong-ca.pem'), cert: path('server.pem'), key: path('server.key') };
}

function slapdConf(dir: string, tls: { ca: string; cert: string; key: string }): string {
  return `include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile ${join(dir, 'slapd.pid')}
argsfile ${join(dir, 'slapd.args')}
TLSCACertificateFile ${tls.ca}
TLSCertificateFile ${tls.cert}
TLSCertificateKeyFile ${tls.key}
database config
database mdb
maxsize 16777216
suffix "${SUFFIX}"
rootdn "${ROOT_DN}"
rootpw ${ROOT_PASSWORD}
directory ${join(dir, 'data')}
access to attrs=userPassword by self read by anonymous auth by * none
access to * by dn.exact="${SERVICE_DN}" read by self read by * none
`;
}

function entries(users: DirectoryUser[], groups: Record<string, string[]>): string {
  const blocks = [
    `dn: ${SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example`,
    ...['people', 'groups', 'services'].map((ou) => `dn: ou=${ou},${SUFFIX}\nobjectClass: organizationalUnit\nou: ${ou}`),
    `dn: ${SERVICE_DN}\nobjectClass: person\ncn: berth\nsn: berth\nuserPassword: ${SERVICE_PASSWORD}`,
    ...users.map((u) => `dn: ${userDn(u.uid)}\nobjectClass: inetOrgPerson\nuid: ${u.uid}\ncn: ${u.cn}\nsn: ${u.cn.split(' ').at(-1)}\nmail: ${u.mail}\nuserPassword: ${u.password}`),
    // groupOfNames needs a member: the service account stands in for an empty group.
    ...Object.entries(groups).map(([cn, uids]) => `dn: ${groupDn(cn)}\nobjectClass: groupOfNames\ncn: ${cn}\n${[SERVICE_DN, ...uids.map(userDn)].map((m) => `member: ${m}`).join('\n')}`),
  ];
  return `${blocks.join('\n\n')}\n`;
}

/** Whether something accepts connections on the port. */
const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });

export async function startLdap(users: DirectoryUser[], groups: Record<string, string[]>): Promise<TestLdap> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-ldap-'));
  mkdirSync(join(dir, 'data'));
  const tls = makeCertificates(dir);
  const conf = join(dir, 'slapd.conf');
  writeFileSync(conf, slapdConf(dir, tls));
  writeFileSync(join(dir, 'seed.ldif'), entries(users, groups));
  execFileSync('slapadd', ['-f', conf, '-l', join(dir, 'seed.ldif')], { stdio: 'pipe' });
  const [port, ldapsPort] = [await freePort(), await freePort()];
  const url = `ldap://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  const stderr: string[] = [];

  async function start(): Promise<void> {
    // -d 0: stay in the foreground (so the test owns the process) without debug output.
    const proc = spawn('slapd', ['-f', conf, '-h', `${url}/ ldaps://127.0.0.1:${ldapsPort}/`, '-d', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    proc.stderr!.on('data', (c: Buffer) => stderr.push(c.toString()));
    child = proc;
    const exited = new Promise<never>((_, reject) => proc.once('exit', (code) => reject(new Error(`slapd exited with ${code}: ${stderr.join('')}`))));
    await Promise.race([exited, waitFor(async () => (await listening(port)) && (await listening(ldapsPort)), 'slapd to listen', 10_000)]);
  }

  async function stop(): Promise<void> {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGKILL');
    await exited;
  }

  const asRoot = ['-x', '-H', url, '-D', ROOT_DN, '-w', ROOT_PASSWORD];
  const modify = (ldif: string) => void execFileSync('ldapmodify', asRoot, { input: ldif, stdio: ['pipe', 'pipe', 'pipe'] });
  await start();
  return {
    url,
    ldapsUrl: `ldaps://127.0.0.1:${ldapsPort}`,
    caFile: tls.ca,
    wrongCaFile: tls.wrongCa,
    modify,
    remove: (dn) => void execFileSync('ldapdelete', [...asRoot, dn], { stdio: 'pipe' }),
    addToGroup: (group, uid) => modify(`dn: ${groupDn(group)}\nchangetype: modify\nadd: member\nmember: ${userDn(uid)}\n`),
    removeFromGroup: (group, uid) => modify(`dn: ${groupDn(group)}\nchangetype: modify\ndelete: member\nmember: ${userDn(uid)}\n`),
    stop,
    start,
    async destroy() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
