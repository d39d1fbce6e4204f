// Character and block devices and FIFOs from a layer, made as docker makes them when this process may
// (root with CAP_MKNOD; a FIFO needs no privilege). Where it may not (a rootless user, a user namespace)
// they are skipped and counted, and the caller warns once: the runtime gives a container its own /dev.
// Node has no mknod(2), so coreutils' mknod makes them; after the first refusal no more are tried.
import { spawnSync } from 'node:child_process';
import { ClientError } from './errors.ts';

export type NodeType = 'character-device' | 'block-device' | 'fifo';

const MKNOD_TYPE: Record<NodeType, string> = { 'character-device': 'c', 'block-device': 'b', fifo: 'p' };

/** Makes device nodes and FIFOs for one image, remembering which kinds this process may not make. */
export class NodeMaker {
  /** Entries not made because making them is not permitted here. */
  skipped = 0;
  private readonly refused = new Set<'device' | 'fifo'>();

  /** Makes the node at `path` (which must not exist); false when it is not permitted here. */
  make(path: string, type: NodeType, major: number, minor: number, what: string): boolean {
    const kind = type === 'fifo' ? 'fifo' : 'device';
    if (this.refused.has(kind)) return this.skip();
    const args = ['-m', '0600', '--', path, MKNOD_TYPE[type]];
    if (type !== 'fifo') args.push(String(major), String(minor));
    // LC_ALL=C: the refusal is recognised by coreutils' English message.
    const result = spawnSync('mknod', args, { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' }, timeout: 10_000 });
    if (result.status === 0) return true;
    if (result.error) throw new ClientError(`${what}: mknod: ${result.error.message}`);
    if (/Operation not permitted/.test(result.stderr)) {
      this.refused.add(kind);
      return this.skip();
    }
    throw new ClientError(`${what}: mknod: ${result.stderr.trim()}`);
  }

  private skip(): false {
    this.skipped++;
    return false;
  }
}
