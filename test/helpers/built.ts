// The berth command as users run it: the bundle `npm run build` makes (dist/bin/berth.js). Tests start
// servers and run commands from it, so what they pass is what `npm start`, the image and the benchmark run;
// the build is made once before the first test (mochaGlobalSetup, named in .mocharc.json), so no test
// runs a stale one.
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '..', '..');

/** Node's arguments that run `berth ARGS…`. */
export function berthArgs(args: string[]): string[] {
  return [join(ROOT, 'dist', 'bin', 'berth.js'), ...args];
}

export function mochaGlobalSetup(): void {
  const built = spawnSync(process.execPath, ['build.mjs'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  if (built.status !== 0) throw new Error(`npm run build failed (${built.status ?? built.signal}):\n${built.stdout}${built.stderr}`);
}
