// An authenticating front for a real Berth, until Berth has auth of its own: /v2 requests pass only
// with a token from its realm (Docker's token flow: 401 + `WWW-Authenticate: Bearer realm,service,scope`,
// GET realm?service&scope with Basic credentials, {token, expires_in}) or, in basic mode, with the
// user's Basic credentials. It records what clients sent, so tests can see the flow.
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TokenGate {
  /** host:port of the gate, as a registry host for clients. */
  host: string;
  /** Token requests: scope asked for and the user whose Basic credentials came with it (undefined: anonymous). */
  tokenRequests: Array<{ scope?: string; service?: string; user?: string }>;
  close(): Promise<void>;
}

export interface TokenGateOptions {
  upstream: string;
  mode: 'bearer' | 'basic';
  users: Record<string, string>;
  /** Repositories anyone may pull without credentials. */
  publicRepositories?: string[];
}

function basicUser(req: IncomingMessage, users: Record<string, string>): string | undefined | false {
  const header = req.headers.authorization ?? '';
  if (!header.startsWith('Basic ')) return undefined;
  const [user, ...rest] = Buffer.from(header.slice(6), 'base64').toString().split(':');
  return user && users[user] === rest.join(':') ? user : false;
}

export async function startTokenGate(options: TokenGateOptions): Promise<TokenGate> {
  const target = new URL(options.upstream);
  const tokens = new Map<string, { user?: string; scope?: string }>();
  const gate: TokenGate = { host: '', tokenRequests: [], close: async () => {} };
  let counter = 0;

  const deny = (res: ServerResponse, challenge: string) => {
    res.writeHead(401, { 'Content-Type': 'application/json', 'WWW-Authenticate': challenge });
    res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
  };

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://gate');
    if (url.pathname === '/token') {
      const scope = url.searchParams.get('scope') ?? undefined;
      const service = url.searchParams.get('service') ?? undefined;
      const user = basicUser(req, options.users);
      gate.tokenRequests.push({ ...(scope ? { scope } : {}), ...(service ? { service } : {}), ...(user ? { user } : {}) });
      if (user === false) return deny(res, 'Basic realm="berth-test"');
      const token = `token-${++counter}`;
      tokens.set(token, { ...(user ? { user } : {}), ...(scope ? { scope } : {}) });
      res.writeHead(200, { 'Content-Type': 'application/json' });
      return res.end(JSON.stringify({ token, expires_in: 300 }));
    }
    const repository = /^\/v2\/(.+?)\/(?:manifests|blobs|tags)\//.exec(url.pathname)?.[1];
    const scope = repository ? `repository:${repository}:pull` : undefined;
    let allowed: boolean;
    if (options.mode === 'basic') {
      allowed = !!basicUser(req, options.users) || (!!repository && !!options.publicRepositories?.includes(repository));
      if (!allowed) return deny(res, 'Basic realm="berth-test"');
    } else {
      const header = req.headers.authorization ?? '';
      const grant = header.startsWith('Bearer ') ? tokens.get(header.slice(7)) : undefined;
      const publicRepo = !!repository && !!options.publicRepositories?.includes(repository);
      allowed = !!grant && (!repository || (grant.scope === scope && (!!grant.user || publicRepo)));
      if (!allowed) {
        const realm = `http://${gate.host}/token`;
        return deny(res, `Bearer realm="${realm}",service="berth-test"${scope ? `,scope="${scope}"` : ''}`);
      }
    }
    const forward = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, authorization: '' } },
      (upstream) => {
        res.writeHead(upstream.statusCode ?? 502, upstream.headers);
        upstream.pipe(res);
      },
    );
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  gate.host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  gate.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return gate;
}
