// What every berth command shares: the configuration (a wrong value stops the command with its message
// and exit code 2, as it stops the server), standard input, repeatable options.
import { InvalidArgumentError } from 'commander';
import { ConfigError, loadClientConfig, loadConfig, type ClientConfig, type Config } from '../../server/config.ts';

/** The server's configuration, for serve and the commands that open its storage. */
export function configOrExit(env: NodeJS.ProcessEnv = process.env): Config {
  return orExit(() => loadConfig(env));
}

/** The runtime client's configuration: a wrong server setting does not stop berth pull. */
export function clientConfigOrExit(env: NodeJS.ProcessEnv = process.env): ClientConfig {
  return orExit(() => loadClientConfig(env));
}

function orExit<T>(load: () => T): T {
  try {
    return load();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`berth: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

/** Standard input as text, without its final newline (a password piped with echo). */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** A command's report on standard output: indented JSON, one document. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** For options given more than once: commander's collector. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** A commander option parser for a count from 1 (--workers, --limit). */
export function positiveCount(value: string): number {
  if (!/^[1-9]\d*$/.test(value)) throw new InvalidArgumentError('expected a whole number from 1');
  return Number(value);
}
