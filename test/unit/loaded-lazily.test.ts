// Rooms a server needs only when configured for them are loaded on first use.
// The AWS SDK costs memory in every process that loads it, workers included: only a process configured for
// S3 may load it. So nothing outside storage/driver/s3/ imports the SDK, and storage/driver/s3/ itself is imported
// only with import() (by storage/driver/index.ts, when a bucket is configured), never by a static import.
import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const SOURCE_FOLDERS = ['bin', 'server', 'storage', 'auth', 'web', 'client', 'platform'];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? sources(path) : entry.name.endsWith('.ts') ? [path] : [];
  });
}

describe('the S3 driver is loaded only by a process configured for S3', () => {
  it('no source outside storage/driver/s3/ imports the AWS SDK, and none imports storage/driver/s3/ statically', () => {
    const files = SOURCE_FOLDERS.flatMap((folder) => sources(join(ROOT, folder))).map((file) => relative(ROOT, file));
    expect(files).to.include('storage/driver/s3/driver.ts');
    const offenders: string[] = [];
    for (const file of files.filter((f) => !f.startsWith('storage/driver/s3/'))) {
      for (const [, type, specifier] of readFileSync(join(ROOT, file), 'utf8').matchAll(/^(?:import|export)(\s+type)?\b[^;]*?\bfrom\s+'([^']+)'/gms)) {
        if (type) continue; // erased at run time
        if (specifier!.startsWith('@aws-sdk/') || /(^|\/)s3\/[^/]*$/.test(specifier!)) offenders.push(`${file}: ${specifier}`);
      }
    }
    expect(offenders).to.deep.equal([]);
    expect(readFileSync(join(ROOT, 'storage', 'driver', 'index.ts'), 'utf8')).to.include("await import('./s3/index.ts')");
  });
});

// The mirror room (and the registry client under it) is the same: only a server configured with mirrors
// loads it, with import() in server/app.ts; elsewhere its names are types only.
describe('the mirror room is loaded only by a server configured with mirrors', () => {
  it('no source outside mirror/ imports the mirror room for its values, except its configuration schema', () => {
    const files = SOURCE_FOLDERS.flatMap((folder) => sources(join(ROOT, folder))).map((file) => relative(ROOT, file));
    const offenders: string[] = [];
    for (const file of files) {
      for (const [, type, specifier] of readFileSync(join(ROOT, file), 'utf8').matchAll(/^(?:import|export)(\s+type)?\b[^;]*?\bfrom\s+'([^']+)'/gms)) {
        if (type || !/(^|\/)mirror\/[^/]*\.ts$/.test(specifier!)) continue;
        if (!specifier!.endsWith('/mirror/config.ts')) offenders.push(`${file}: ${specifier}`);
      }
    }
    expect(offenders).to.deep.equal([]);
    expect(readFileSync(join(ROOT, 'server', 'app.ts'), 'utf8')).to.include("await import('../mirror/index.ts')");
  });
});
