// `npm run build`: the server and the berth command as one bundle in dist/bin (chunks beside it for what
// loads on demand), built from the TypeScript by esbuild; `npm run typecheck` checks the types. One file
// instead of some 400 modules: at start-up Node resolves, reads and links a few files, not hundreds, so its
// module loader never gets hot enough to be optimised, and an idle server keeps neither the optimising
// compiler's pages nor the sources and records of hundreds of modules (see README, idle memory).
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

// Left to Node at run time: native addons, and the large clients that load only when configured (S3, Redis,
// LDAP, OIDC) or asked for (the browser for tests); bundling them would only grow the build.
const EXTERNAL = ['sharp', '@node-rs/argon2', 'playwright-core', '@aws-sdk/*', 'ioredis', 'ldapts', 'openid-client'];

rmSync('dist', { recursive: true, force: true });
await build({
  entryPoints: ['bin/berth.ts'],
  outdir: 'dist/bin',
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: EXTERNAL,
  // Whitespace only: names stay, so stack traces in logs still read.
  minifyWhitespace: true,
  logLevel: 'warning',
  // The CommonJS packages in the bundle require Node's own modules; an ES module has no `require` of its own.
  banner: { js: "import { createRequire as __berthCreateRequire } from 'node:module'; const require = __berthCreateRequire(import.meta.url);" },
});
