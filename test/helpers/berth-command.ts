// Runs the berth command (gc, retention, policy, …) on a test server's storage, as an operator would.
import { resolve } from 'node:path';
import type { TestBerth } from './berth.ts';
import { run, type RunResult } from './clients.ts';
import { berthArgs } from './built.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');

export function berthCommand(berth: TestBerth, args: string[], options: { allowFailure?: boolean; env?: Record<string, string> } = {}): Promise<RunResult> {
  return run(process.execPath, berthArgs(args), {
    cwd: ROOT,
    env: { ...process.env, ...berth.storageEnv, BERTH_LOG_LEVEL: 'silent', ...options.env },
    timeoutMs: 60_000,
    allowFailure: options.allowFailure,
  });
}

/** The JSON the command printed. */
export async function berthJson<T = any>(berth: TestBerth, args: string[]): Promise<T> {
  return JSON.parse((await berthCommand(berth, args)).stdout) as T;
}
