// Who is looking: a browser session (a random id in an HttpOnly, SameSite=Lax cookie; its state in
// storage, so every replica accepts it), or a bearer token (the JSON API), or nobody. Also the CSRF check
// every form post passes: the form's token must equal the session's, or for a visitor not signed in, the
// one in their CSRF cookie (double submit).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Context } from 'koa';
import { DirectoryUnavailableError, limitOf, principalOf, type AuthService, type Principal, type ScopeGrant } from '../auth/index.ts';
import { layout, type RepositorySummary, type StorageDriver } from '../storage/index.ts';

const SESSION_COOKIE = 'berth_session';
const CSRF_COOKIE = 'berth_csrf';
const SESSION_TTL_MS = 7 * 24 * 3600 * 1000;

interface SessionRecord {
  user: string;
  /** The account's password epoch when the session began: a password change ends the session. */
  epoch?: string;
  csrf: string;
  createdAt: string;
  expiresAt: string;
}

export interface Viewer {
  principal: Principal;
  limit?: ScopeGrant[];
  /** The signed-in user's name (sessions only). */
  user?: string;
  /** The token a form must carry. */
  csrf: string;
}

function sessionPath(id: string): string {
  return layout.session(createHash('sha256').update(id).digest('hex'));
}

function cookieOptions(ctx: Context, maxAgeMs?: number) {
  return { httpOnly: true, sameSite: 'lax' as const, path: '/', secure: ctx.secure, overwrite: true, ...(maxAgeMs ? { maxAge: maxAgeMs } : {}) };
}

export class Sessions {
  constructor(
    private readonly driver: StorageDriver,
    private readonly auth: AuthService | undefined,
  ) {}

  async start(ctx: Context, user: string): Promise<void> {
    const id = randomBytes(32).toString('base64url');
    const now = Date.now();
    const epoch = (await this.auth?.accounts.user(user))?.epoch;
    const record: SessionRecord = { user, epoch, csrf: randomBytes(24).toString('base64url'), createdAt: new Date(now).toISOString(), expiresAt: new Date(now + SESSION_TTL_MS).toISOString() };
    await this.driver.putContent(sessionPath(id), JSON.stringify(record));
    ctx.cookies.set(SESSION_COOKIE, id, cookieOptions(ctx, SESSION_TTL_MS));
  }

  async end(ctx: Context): Promise<void> {
    const id = ctx.cookies.get(SESSION_COOKIE);
    if (id && /^[A-Za-z0-9_-]{43}$/.test(id)) await this.driver.delete(sessionPath(id));
    ctx.cookies.set(SESSION_COOKIE, '', { ...cookieOptions(ctx), maxAge: 0 });
  }

  /** The viewer of this request; sets the CSRF cookie for a visitor who has none. */
  async viewer(ctx: Context): Promise<Viewer> {
    if (ctx.state.viewer) return ctx.state.viewer as Viewer;
    const viewer = (await this.fromSession(ctx)) ?? this.fromToken(ctx) ?? this.anonymous(ctx);
    ctx.state.viewer = viewer;
    return viewer;
  }

  private async fromSession(ctx: Context): Promise<Viewer | undefined> {
    const id = ctx.cookies.get(SESSION_COOKIE);
    if (!this.auth || !id || !/^[A-Za-z0-9_-]{43}$/.test(id)) return undefined;
    const path = sessionPath(id);
    const record = await readSession(this.driver, path);
    if (!record) return undefined;
    if (isOver(record)) {
      await this.driver.delete(path);
      return undefined;
    }
    // The account is read each time: a removed user or a changed admin flag takes effect at once; a
    // directory user's entry is read again when their last check is old (while the directory does not
    // answer, the page is shown as to a visitor).
    const who = await this.auth.current(record.user, { kind: 'password', epoch: record.epoch ?? '' }, ctx.ip).catch((err: unknown) => {
      if (err instanceof DirectoryUnavailableError) return undefined;
      throw err;
    });
    if (who?.principal.kind !== 'user') return undefined;
    return { principal: who.principal, user: who.principal.name, csrf: record.csrf };
  }

  private fromToken(ctx: Context): Viewer | undefined {
    const header = ctx.get('Authorization');
    if (!this.auth || !/^Bearer /i.test(header)) return undefined;
    const verified = this.auth.tokens.verify(header.slice(7).trim());
    if (!verified.ok) return undefined;
    return { principal: principalOf(verified.claims), limit: limitOf(verified.claims), csrf: '' };
  }

  private anonymous(ctx: Context): Viewer {
    let csrf = ctx.cookies.get(CSRF_COOKIE);
    if (!csrf || !/^[A-Za-z0-9_-]{32}$/.test(csrf)) {
      csrf = randomBytes(24).toString('base64url');
      ctx.cookies.set(CSRF_COOKIE, csrf, cookieOptions(ctx));
    }
    return { principal: { kind: 'anonymous' }, csrf };
  }
}

async function readSession(driver: StorageDriver, path: string): Promise<SessionRecord | undefined> {
  const raw = await driver.getContent(path);
  if (!raw) return undefined;
  try {
    return JSON.parse(raw.toString()) as SessionRecord;
  } catch {
    // Torn or foreign content: no session; the sweep removes it.
    return { user: '', csrf: '', createdAt: '', expiresAt: '' };
  }
}

/** An unreadable expiry counts as past: a session lives only as long as it says. */
const isOver = (record: SessionRecord) => !(Date.parse(record.expiresAt) > Date.now());

/** For the expiry sweep: whether the session stored at `path` has ended (expired or unreadable). */
export async function sessionEnded(driver: StorageDriver, path: string): Promise<boolean> {
  const record = await readSession(driver, path);
  return record !== undefined && isOver(record);
}

export function csrfMatches(viewer: Viewer, presented: string | undefined): boolean {
  if (!presented || !viewer.csrf) return false;
  const a = Buffer.from(presented);
  const b = Buffer.from(viewer.csrf);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Which of these repositories the viewer may pull, by the same policy the /v2 API applies. `filter` takes
 * the visibilities from the index held in memory (RepositoryStore.visibilities) and looks a role up once
 * per organisation, so what the viewer cannot see costs no storage read; `confirm` asks
 * AuthService.allowed (settings read from storage) for the few that are shown.
 */
export class Visibility {
  constructor(
    private readonly auth: AuthService | undefined,
    private readonly viewer: Viewer,
  ) {}

  async filter(entries: RepositorySummary[]): Promise<RepositorySummary[]> {
    if (!this.auth) return entries;
    const visible = new Set(await this.auth.pullableNames(this.viewer.principal, entries.map((e) => e.name), this.viewer.limit));
    return entries.filter((e) => visible.has(e.name));
  }

  async confirm(entries: RepositorySummary[]): Promise<RepositorySummary[]> {
    if (!this.auth) return entries;
    const allowed = await Promise.all(entries.map((e) => this.may(e.name, 'pull')));
    return entries.filter((_, i) => allowed[i]);
  }

  async may(name: string, action: 'pull' | 'push' | 'delete'): Promise<boolean> {
    if (!this.auth) return true;
    return (await this.auth.allowed(this.viewer.principal, name, this.viewer.limit)).has(action);
  }
}
