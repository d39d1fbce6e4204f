// Where a storage path lives in the bucket. A path becomes an object key: the optional prefix, then the path
// without its leading "/" ("/blobs/sha256/ab/…/data" → "<prefix>blobs/sha256/ab/…/data"). A "directory" is
// a key prefix: it exists while any key lies under it.
//
// A path being written also has writer objects beside it (see writer.ts):
//   <dir>/.<name>@writer      the writer state (sidecar.ts)
//   <dir>/.<name>@tail@<hex>  objects holding bytes that are not yet in a part
// Storage path segments never start with "." and never contain "@", so these names can collide with no
// path, and every one of them for a path shares the key prefix "<dir>/.<name>@".
import { randomBytes } from 'node:crypto';

const SIDECAR_NAME_RE = /^\.(.+)@writer$/;

export class Keys {
  /** "" or a prefix ending in "/". */
  readonly prefix: string;

  constructor(prefix: string | undefined) {
    const trimmed = (prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.prefix = trimmed ? `${trimmed}/` : '';
  }

  object(path: string): string {
    return this.prefix + path.slice(1);
  }

  /** The key prefix of everything under a directory path. */
  dir(path: string): string {
    return path === '/' ? this.prefix : `${this.prefix}${path.slice(1)}/`;
  }

  /** The key prefix of a path's writer objects (sidecar and tail objects). */
  hidden(path: string): string {
    const slash = path.lastIndexOf('/');
    return `${this.dir(slash === 0 ? '/' : path.slice(0, slash))}.${path.slice(slash + 1)}@`;
  }

  sidecar(path: string): string {
    return `${this.hidden(path).slice(0, -1)}@writer`;
  }

  /** A new tail object's key (each write that leaves a tail stores it under a name of its own). */
  tailObject(path: string): string {
    return `${this.hidden(path)}tail@${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
  }
}

/** For a listed name: the name of the path a sidecar belongs to, or undefined when it is no sidecar. */
export function sidecarOf(name: string): string | undefined {
  return SIDECAR_NAME_RE.exec(name)?.[1];
}

/** The object key a sidecar key belongs to, or undefined when it is no sidecar. */
export function objectOfSidecar(key: string): string | undefined {
  const slash = key.lastIndexOf('/');
  const name = sidecarOf(key.slice(slash + 1));
  return name === undefined ? undefined : key.slice(0, slash + 1) + name;
}
