// Attacker: strangers at several loopback addresses send wrong credentials for other people's accounts.
// They must be slowed as much as before, and must not lock out the owners: a robot or a token never
// answers 429 for failures from other addresses, and a password works from where its owner signed in.
import { expect } from 'chai';
import { request } from 'node:http';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { addUser, basic, cli } from '../helpers/auth.ts';

const PER_ACCOUNT = 5;
const PER_ACCOUNT_AND_ADDRESS = 4;
const PER_ADDRESS = 30;

/** A request from a chosen loopback source address (127.0.0.2, 127.0.0.3 … are all this machine). */
function from(berth: TestBerth, address: string, path: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, berth.url), { headers, localAddress: address, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('security: failed logins slow the guesser, never lock out the owner', function () {
  let berth: TestBerth;
  let robot: [string, string];
  let pat: [string, string];
  const login = (address: string, [user, secret]: [string, string]) => from(berth, address, '/token?service=berth', { Authorization: basic(user, secret) });
  const pull = (address: string, [user, secret]: [string, string]) => from(berth, address, '/v2/acme/app/manifests/v1', { Authorization: basic(user, secret) });

  before(async function () {
    berth = await startBerth({
      env: {
        BERTH_MODE: 'private',
        BERTH_LOGIN_FAILURES_PER_ACCOUNT: String(PER_ACCOUNT),
        BERTH_LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS: String(PER_ACCOUNT_AND_ADDRESS),
        BERTH_LOGIN_FAILURES_PER_ADDRESS: String(PER_ADDRESS),
      },
    });
    for (const name of ['alice', 'bob', 'carol', 'dave']) await addUser(berth, name, `${name}-password-1`);
    await cli(berth, ['org', 'add', 'acme', '--owner', 'alice']);
    const robotOut = await cli(berth, ['token', 'create', '--robot', 'acme+ci', '--scope', 'repository:acme/*:pull,push', '--expires-in', 'never']);
    robot = ['acme+ci', /token: (\S+)/.exec(robotOut)![1]!];
    const patOut = await cli(berth, ['token', 'create', '--user', 'bob', '--expires-in', 'never']);
    pat = ['bob', /token: (\S+)/.exec(patOut)![1]!];
  });

  after(() => berth?.destroy());

  it('never locks out a robot or a personal access token for failures from another address', async function () {
    const attacker = '127.0.0.2';
    const seen: number[] = [];
    for (let i = 0; i < 3 * PER_ACCOUNT; i++) seen.push(await login(attacker, ['acme+ci', `wrong-secret-${i}`]));
    for (let i = 0; i < 3 * PER_ACCOUNT; i++) seen.push(await login(attacker, ['bob', `wrong-password-${i}`]));
    expect(seen, 'the attacker is slowed').to.include(429);
    expect(seen.filter((s) => s === 401)).to.have.length(2 * PER_ACCOUNT_AND_ADDRESS);

    const ci = '127.0.0.3';
    expect(await login(ci, robot), 'the robot at its own address').to.equal(200);
    expect(await login(ci, pat), 'bob\'s token at its own address').to.equal(200);
    // Straight to /v2 (curl -u) as well.
    expect((await from(berth, ci, '/v2/', { Authorization: basic(...robot) }))).to.equal(200);
    expect((await from(berth, ci, '/v2/', { Authorization: basic(...pat) }))).to.equal(200);
  });

  it('lets a user sign in with the password from an address they signed in from before', async function () {
    const home = '127.0.0.4';
    expect(await login(home, ['carol', 'carol-password-1'])).to.equal(200);
    // Guesses spread over many addresses, a few each: the account's own limit is passed.
    const seen: number[] = [];
    for (let i = 0; i < 3 * PER_ACCOUNT; i++) seen.push(await login(`127.0.1.${i + 1}`, ['carol', `guess-${i}`]));
    expect(seen.filter((s) => s === 401)).to.have.length(PER_ACCOUNT);
    expect(await login(home, ['carol', 'carol-password-1']), 'carol at home').to.equal(200);
    expect(await pull(home, ['carol', 'carol-password-1']), 'carol at home, straight to /v2').to.not.equal(429);
  });

  it('keeps a brute force spread over many addresses as slow as before: the account\'s limit holds for new addresses', async function () {
    const seen: number[] = [];
    for (let i = 0; i < 3 * PER_ACCOUNT; i++) seen.push(await login(`127.0.2.${i + 1}`, ['dave', `guess-${i}`]));
    expect(seen.filter((s) => s === 401)).to.have.length(PER_ACCOUNT);
    expect(seen.slice(PER_ACCOUNT).every((s) => s === 429)).to.equal(true);
    // Even the right password, from an address that never signed in as dave, waits for the window.
    expect(await login('127.0.2.200', ['dave', 'dave-password-1'])).to.equal(429);
  });

  it('slows one address per account and over all accounts', async function () {
    const attacker = '127.0.3.1';
    const perAccount: number[] = [];
    for (let i = 0; i < PER_ACCOUNT_AND_ADDRESS + 2; i++) perAccount.push(await login(attacker, ['acme+nobody', `wrong-${i}`]));
    expect(perAccount.slice(0, PER_ACCOUNT_AND_ADDRESS)).to.deep.equal(Array(PER_ACCOUNT_AND_ADDRESS).fill(401));
    expect(perAccount.slice(PER_ACCOUNT_AND_ADDRESS)).to.deep.equal([429, 429]);
    const spraying = '127.0.3.2';
    const sprayed: number[] = [];
    for (let i = 0; i < PER_ADDRESS + 2; i++) sprayed.push(await login(spraying, [`someone${i}+ci`, 'wrong']));
    expect(sprayed.filter((s) => s === 401)).to.have.length(PER_ADDRESS);
    expect(sprayed.slice(PER_ADDRESS)).to.deep.equal([429, 429]);
  });
});
