// What a mirror is configured with: one entry of `mirrors` (the JSON config file, or the same JSON in
// BERTH_MIRRORS), validated at start-up with the rest of the configuration (server/config.ts).
import { z } from 'zod/v3';
import { isValidName } from '../storage/reference.ts';

/** An http(s) origin with nothing after it: where an upstream registry or a token realm lives. */
export const originSchema = z
  .string()
  .url()
  .refine((v) => /^https?:\/\//i.test(v), 'expected an http or https URL')
  .refine((v) => {
    const url = new URL(v);
    return (url.pathname === '/' || url.pathname === '') && url.search === '' && url.hash === '' && url.username === '' && url.password === '';
  }, 'expected only a scheme and host, e.g. https://registry-1.docker.io')
  .transform((v) => new URL(v).origin);

export const mirrorSchema = z
  .object({
    /** The first name components under which this mirror's repositories appear: `docker.io` serves `docker.io/library/alpine`. */
    prefix: z.string().refine(isValidName, 'expected repository name components, e.g. docker.io or mirrors/ghcr.io'),
    upstream: originSchema,
    username: z.string().min(1).optional(),
    password: z.string().min(1).optional(),
    /** Token realms on other hosts that may see the credentials (the upstream's own host always may). */
    realms: z.array(originSchema).max(16).default([]),
    tagTtlSeconds: z.number().int().min(0).max(7 * 24 * 3600).default(300),
    maxBytes: z.number().int().min(1).optional(),
    dockerMirror: z.boolean().default(false),
    /** An upstream request that brings no answer (or no body bytes) for this long fails. */
    timeoutSeconds: z.number().int().min(1).max(600).default(30),
  })
  .strict()
  .refine((m) => (m.username === undefined) === (m.password === undefined), 'username and password go together');

export type MirrorConfig = z.infer<typeof mirrorSchema>;

/** The list: JSON text (from the environment) or an array (from the file); prefixes distinct, never nested, one docker mirror at most. */
export const mirrorsSchema = z
  .preprocess((v) => {
    if (typeof v !== 'string') return v;
    try {
      return JSON.parse(v) as unknown;
    } catch {
      return v; // not JSON: the array check below names it
    }
  }, z.array(mirrorSchema).max(64))
  .superRefine((mirrors, ctx) => {
    for (const [i, m] of mirrors.entries()) {
      for (const other of mirrors.slice(0, i)) {
        if (m.prefix === other.prefix || m.prefix.startsWith(`${other.prefix}/`) || other.prefix.startsWith(`${m.prefix}/`)) {
          ctx.addIssue({ code: 'custom', path: [i, 'prefix'], message: `prefix ${m.prefix} overlaps ${other.prefix}` });
        }
      }
    }
    if (mirrors.filter((m) => m.dockerMirror).length > 1) {
      ctx.addIssue({ code: 'custom', message: 'at most one mirror can be dockerMirror (the one docker\'s registry-mirrors reach without a prefix)' });
    }
  });

/** The configured value as an error message may show it: every password replaced (secrets are never logged). */
export function withoutSecrets(value: unknown): unknown {
  let parsed = value;
  if (typeof value === 'string') {
    try {
      parsed = JSON.parse(value) as unknown;
    } catch {
      return '(not JSON)';
    }
  }
  if (!Array.isArray(parsed)) return parsed;
  return parsed.map((m: unknown) => (m && typeof m === 'object' && 'password' in m ? { ...m, password: '(hidden)' } : m));
}
