// The replication page, for registry admins (anyone else: not found, as for a hidden repository): each
// rule with its triggers, the run in progress, and its last runs (outcome, why it stopped, counts,
// bytes); a "Run now" form per rule (CSRF-checked; no JavaScript needed). Rules are added and removed
// with berth replication or the admin API.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { ReplicationError, type RuleStatus, type RunRecord } from '../../replication/index.ts';
import { bytes, html, when, type Html } from '../html.ts';
import type { PageKit } from './kit.ts';

/** Runs shown per rule: the ledger keeps more, the API shows them all. */
const SHOWN_RUNS = 5;

export function replicationPages(router: Router, kit: PageKit): void {
  const { auth, sessions, replication } = kit.deps;

  async function isAdmin(ctx: Context): Promise<boolean> {
    if (!auth) return true;
    const p = (await sessions.viewer(ctx)).principal;
    return p.kind === 'user' && p.admin === true;
  }

  function run(record: RunRecord): Html {
    const outcome = record.outcome === 'stopped' ? html`stopped (${record.reason})` : html`${record.outcome}`;
    return html`<tr><td>${when(record.finishedAt)}</td><td>${record.trigger}</td><td class="outcome-${record.outcome}">${outcome}${record.message ? html`<br><small>${record.message}</small>` : ''}</td>
<td>${record.copied}</td><td>${record.skipped}</td><td>${record.failed}</td><td>${bytes(record.bytes)}</td></tr>`;
  }

  function rule(status: RuleStatus, csrf: string): Html {
    const triggers = [
      'manual',
      ...(status.intervalSeconds > 0 ? [`every ${status.intervalSeconds} s`] : []),
      ...(status.onPush ? ['each push'] : []),
    ].join(', ');
    const running = status.running
      ? html`<p class="notice" role="status">${status.interrupted ? 'Interrupted (will be resumed)' : 'Running'} since ${when(status.running.startedAt)}: ${status.running.copied} copied, ${status.running.skipped} skipped so far.</p>`
      : '';
    return html`<section id="rule-${status.name}"><h2>${status.name}${status.enabled ? '' : html` <span class="badge">disabled</span>`}</h2>
<p>${status.direction === 'pull' ? html`Pulls from <code>${status.remote.url}</code>` : html`Pushes to <code>${status.remote.url}</code>`}:
<code>${status.repositories.join(', ')}</code>${status.destination ? html` into <code>${status.destination}/</code>` : ''}. Runs: ${triggers}.</p>
${running}
<form method="post" action="/admin/replication/${status.name}/run"><input type="hidden" name="_csrf" value="${csrf}"><button type="submit">Run now</button></form>
${status.history.length === 0
  ? html`<p>No runs yet.</p>`
  : html`<table><thead><tr><th>Finished</th><th>Trigger</th><th>Outcome</th><th>Copied</th><th>Skipped</th><th>Failed</th><th>Sent</th></tr></thead>
<tbody>${status.history.slice(0, SHOWN_RUNS).map(run)}</tbody></table>`}</section>`;
  }

  async function listing(ctx: Context, status = 200, message?: string, error = false): Promise<void> {
    const viewer = await sessions.viewer(ctx);
    const rules = await replication.list();
    await kit.reply(ctx, status, 'Replication', html`<h1>Replication</h1>
${message ? html`<p class="${error ? 'error' : 'notice'}" role="${error ? 'alert' : 'status'}">${message}</p>` : ''}
${rules.length === 0 ? html`<p>No replication rules. Add one with <code>berth replication add</code> or <code>POST /api/v1/replication/rules</code>.</p>` : rules.map((r) => rule(r, viewer.csrf))}`);
  }

  router.get('/admin/replication', async (ctx) => {
    ctx.state.route = 'web-replication';
    if (!(await isAdmin(ctx))) return kit.notFound(ctx);
    ctx.set('Cache-Control', 'no-store');
    await listing(ctx);
  });

  router.post('/admin/replication/:name/run', async (ctx) => {
    ctx.state.route = 'web-replication';
    const posted = await kit.postedForm(ctx);
    if (!posted) return;
    if (!(await isAdmin(ctx))) return kit.notFound(ctx);
    const name = ctx.params.name!;
    try {
      const { done } = await replication.begin(name);
      done.catch(() => {}); // the run records its own end
      await listing(ctx, 202, `A run of ${name} started; reload for its end.`);
    } catch (err) {
      if (!(err instanceof ReplicationError)) throw err;
      await listing(ctx, err.code === 'NOT_FOUND' ? 404 : 409, err.message, true);
    }
  });
}
