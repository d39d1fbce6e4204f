// The OpenAPI 3.1 document of /api/v1, served at /api/v1/openapi.json. A test compares its paths and
// methods with the routes registered on the router (test/web/admin-api.test.ts), so neither drifts.
import type Router from '@koa/router';

type Schema = Record<string, unknown>;

const str = { type: 'string' };
const strings = { type: 'array', items: str, maxItems: 100 };
const object = (properties: Record<string, Schema>, required: string[] = []): Schema => ({ type: 'object', properties, required });
const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });

const errors = { description: 'refused: {errors: [{code, message, detail}]}', content: { 'application/json': { schema: ref('Errors') } } };
const json = (description: string, schema: Schema = { type: 'object' }) => ({ description, content: { 'application/json': { schema } } });

interface Operation {
  summary: string;
  /** Who may call it, beyond an unlimited bearer token or a session (open mode: anyone). */
  who?: string;
  body?: Schema;
  ok?: number;
  result?: Schema;
}

function operation(op: Operation, params: string[]): Schema {
  return {
    summary: op.summary,
    ...(op.who ? { description: `Who may: ${op.who}.` } : {}),
    ...(params.length ? { parameters: params.map((name) => ({ name, in: 'path', required: true, schema: str })) } : {}),
    ...(op.body ? { requestBody: { required: true, content: { 'application/json': { schema: op.body } } } } : {}),
    responses: { [String(op.ok ?? 200)]: json('done', op.result), '4XX': errors },
  };
}

const ADMIN = 'a registry admin';
const MANAGER = 'a registry admin, the user of that namespace, or an admin of that organisation';
const SELF = 'the user, or a registry admin';

const tokenBody = object({ description: str, scopes: { ...strings, description: 'repository:<name, prefix/* or *>:<pull,push,delete or *>' }, expiresIn: { type: 'string', description: '30d, 12h, 90m, 3600s or never; 90d when absent' } });

/** Each path (OpenAPI's `{param}` form) and its operations by method. */
const PATHS: Record<string, Record<string, Operation>> = {
  '/api/v1/openapi.json': { get: { summary: 'This document' } },
  '/api/v1/search': { get: { summary: 'Search repositories (what the caller may pull)' } },
  '/api/v1/repositories/{name}': {
    get: { summary: 'A repository and a page of its tags' },
    patch: { summary: 'Set visibility and description', who: 'a registry admin, or who may delete the repository', body: object({ visibility: { enum: ['public', 'private'] }, description: str }), result: ref('RepositorySettings') },
  },
  '/api/v1/users': { post: { summary: 'Sign up (when sign-up is open)', body: object({ username: str, password: str }, ['username', 'password']), ok: 201 } },
  '/api/v1/admin/users': {
    get: { summary: 'List users, a page at a time: ?n= (100 when absent, at most 1000) and ?last=; a Link header names the next page', who: ADMIN, result: object({ users: { type: 'array', items: ref('User') } }) },
    post: { summary: 'Create a user', who: ADMIN, body: object({ name: str, password: str, admin: { type: 'boolean' } }, ['name', 'password']), ok: 201, result: ref('User') },
  },
  '/api/v1/admin/users/{name}': { delete: { summary: 'Remove a user, their roles, robots and tokens; the name is retired', who: ADMIN } },
  '/api/v1/admin/gc': { get: { summary: 'The last garbage collection and the next', who: ADMIN }, post: { summary: 'Start a garbage collection', who: ADMIN, ok: 202 } },
  '/api/v1/organisations': {
    get: { summary: 'The organisations the caller manages (any of them for an admin), a page at a time: ?n= (100 when absent, at most 1000) and ?last=; a Link header names the next page', result: object({ organisations: { type: 'array', items: ref('Organisation') } }) },
    post: { summary: 'Create an organisation', who: ADMIN, body: object({ name: str, owner: str }, ['name']), ok: 201, result: ref('Organisation') },
  },
  '/api/v1/organisations/{name}': { get: { summary: 'An organisation and its members', who: MANAGER, result: ref('Organisation') } },
  '/api/v1/organisations/{name}/members/{user}': {
    put: { summary: 'Set a member\'s role', who: MANAGER, body: object({ role: { enum: ['read', 'write', 'admin'] } }, ['role']), result: ref('Organisation') },
    delete: { summary: 'Remove a member', who: MANAGER, result: ref('Organisation') },
  },
  '/api/v1/users/{name}/tokens': {
    get: { summary: 'A user\'s personal access tokens (never their secrets)', who: SELF, result: object({ tokens: { type: 'array', items: ref('Token') } }) },
    post: { summary: 'Create a personal access token; its secret is in this answer only', who: SELF, body: tokenBody, ok: 201, result: ref('Token') },
  },
  '/api/v1/users/{name}/tokens/{id}': { delete: { summary: 'Revoke a personal access token', who: SELF } },
  '/api/v1/namespaces/{namespace}/robots': {
    get: { summary: 'A namespace\'s robot accounts (never their secrets)', who: MANAGER, result: object({ robots: { type: 'array', items: ref('Robot') } }) },
    post: { summary: 'Create a robot account; its secret is in this answer only', who: MANAGER, body: { ...tokenBody, properties: { ...(tokenBody.properties as Schema), name: str }, required: ['name'] }, ok: 201, result: ref('Robot') },
  },
  '/api/v1/namespaces/{namespace}/robots/{name}': { delete: { summary: 'Revoke a robot account', who: MANAGER } },
  '/api/v1/policies': { get: { summary: 'Every lifecycle policy', who: ADMIN } },
  '/api/v1/policies/{scope}': {
    get: { summary: 'The policy of a repository or namespace, with the namespace\'s usage when it sets a quota', who: MANAGER, result: object({ scope: str, policy: ref('Policy'), usageBytes: { type: 'integer' } }, ['scope', 'policy']) },
    put: { summary: 'Replace the policy of a repository or namespace (a quota: registry admins only; others leave it as it is)', who: MANAGER, body: ref('Policy') },
    delete: { summary: 'Remove the policy of a repository or namespace (one with a quota: registry admins only)', who: MANAGER },
  },
  '/api/v1/webhooks': {
    get: { summary: 'The webhook endpoints the caller manages' },
    post: { summary: 'Add a webhook endpoint; its signing secret is in this answer only', who: 'a registry admin (global), or the namespace\'s managers', body: object({ url: str, events: strings, namespace: str }, ['url']), ok: 201 },
  },
  '/api/v1/webhooks/{id}': { get: { summary: 'A webhook endpoint' }, delete: { summary: 'Remove a webhook endpoint' } },
  '/api/v1/webhooks/{id}/deliveries': { get: { summary: 'A webhook endpoint\'s queued and failed deliveries' } },
  '/api/v1/replication/rules': {
    get: { summary: 'Every replication rule with its run in progress and last runs', who: ADMIN, result: object({ rules: { type: 'array', items: ref('ReplicationStatus') } }) },
    post: { summary: 'Add a replication rule; its remote password is never shown again', who: ADMIN, body: ref('ReplicationRule'), ok: 201, result: ref('ReplicationStatus') },
  },
  '/api/v1/replication/rules/{name}': {
    get: { summary: 'A replication rule, its run in progress and its history', who: ADMIN, result: ref('ReplicationStatus') },
    delete: { summary: 'Remove a replication rule and its history', who: ADMIN },
  },
  '/api/v1/replication/rules/{name}/run': { post: { summary: 'Start a run of the rule now (409 while one runs anywhere)', who: ADMIN, ok: 202, result: ref('ReplicationRun') } },
};

const scopeGrant = object({ pattern: str, actions: { type: 'array', items: { enum: ['pull', 'push', 'delete'] } } });
const expiring = { scopes: { type: 'array', items: scopeGrant }, createdAt: str, expiresAt: str, revokedAt: str, secret: { type: 'string', description: 'only in the answer that creates it' } };

export const OPENAPI_DOCUMENT = {
  openapi: '3.1.0',
  info: { title: 'Berth API', version: '1' },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'a token from /token (an unlimited one: no repository scope) or a browser session with X-CSRF-Token on writes' } },
    schemas: {
      Errors: object({ errors: { type: 'array', items: object({ code: str, message: str, detail: {} }, ['code', 'message']) } }, ['errors']),
      User: object({ name: str, admin: { type: 'boolean' }, createdAt: str }, ['name', 'admin']),
      Organisation: object({ name: str, members: { type: 'object', additionalProperties: { enum: ['read', 'write', 'admin'] } }, createdAt: str }, ['name', 'members']),
      Token: object({ id: str, owner: str, description: str, ...expiring }, ['id', 'owner']),
      Robot: object({ name: str, namespace: str, ...expiring }, ['name', 'namespace']),
      RepositorySettings: object({ name: str, visibility: { enum: ['public', 'private', null] }, description: str }),
      Policy: object({
        immutableTags: strings,
        quotaBytes: { type: 'integer', minimum: 0, description: 'namespaces only' },
        retention: { type: 'object', description: 'keepLast, keepDays, keepTags (see README)' },
      }),
      ReplicationRule: object(
        {
          name: str,
          direction: { enum: ['pull', 'push'] },
          remote: object({ url: str, username: str, password: str, realms: { ...strings, description: 'token realm origins on other hosts that may see the credentials' }, timeoutSeconds: { type: 'integer' } }, ['url']),
          repositories: { ...strings, description: 'names or globs (* within a component, ** across); a pull rule\'s globs need the remote\'s /v2/_catalog' },
          destination: { type: 'string', description: 'the namespace the copies go under' },
          tags: object({ glob: strings, regex: str, semver: str }),
          platforms: { ...strings, description: 'os/architecture[/variant]' },
          reduceIndex: { type: 'boolean', description: 'copy an index reduced to the platforms: a new index with its own digest' },
          newest: { type: 'integer', minimum: 1 },
          intervalSeconds: { type: 'integer', minimum: 0 },
          onPush: { type: 'boolean', description: 'push rules: run after each push to a matching repository' },
          enabled: { type: 'boolean' },
        },
        ['name', 'direction', 'remote', 'repositories'],
      ),
      ReplicationRun: object({ id: str, trigger: { enum: ['manual', 'schedule', 'push', 'resume'] }, startedAt: str, finishedAt: str, outcome: { enum: ['succeeded', 'partial', 'stopped'] }, reason: { enum: ['storage-full', 'refused', 'unavailable'] }, message: str, copied: { type: 'integer' }, skipped: { type: 'integer' }, failed: { type: 'integer' }, bytes: { type: 'integer' }, failures: strings }),
      ReplicationStatus: { type: 'object', description: 'the rule (remote.hasPassword instead of the password), running, interrupted, last, history', properties: { running: ref('ReplicationRun'), last: ref('ReplicationRun'), history: { type: 'array', items: ref('ReplicationRun') } } },
    },
  },
  security: [{ bearer: [] }],
  paths: Object.fromEntries(
    Object.entries(PATHS).map(([path, ops]) => {
      const params = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
      return [path, Object.fromEntries(Object.entries(ops).map(([method, op]) => [method, operation(op, params)]))];
    }),
  ),
};

export function openApiRoutes(router: Router): void {
  router.get('/api/v1/openapi.json', (ctx) => {
    ctx.state.route = 'api-openapi';
    ctx.body = OPENAPI_DOCUMENT;
  });
}
