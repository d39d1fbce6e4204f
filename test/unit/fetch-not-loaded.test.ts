// Koa asks of every JSON body whether it is a fetch `Response`, and the first touch of that global loads
// Node's fetch implementation (undici) for good: about 2 MiB of heap and 10 MiB resident in a server that
// fetches nothing. server/json-bodies.ts serialises JSON bodies before Koa asks; this checks, in a real
// server process answering JSON, that undici was never loaded.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBerth } from '../helpers/berth.ts';

describe('a server answering JSON does not load the fetch implementation', () => {
  it('answers JSON bodies and errors with the right type and length, and undici stays unloaded', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-undici-'));
    const preload = join(dir, 'report.cjs');
    const report = join(dir, 'report.json');
    writeFileSync(
      preload,
      `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(report)}, JSON.stringify(process.moduleLoadList.filter((m) => m.includes('undici')))));\n`,
    );
    const berth = await startBerth({ env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${preload}` } });
    try {
      for (const [path, status] of [['/v2/', 200], ['/v2/_catalog', 200], ['/v2/no/such/manifests/latest', 404], ['/api/v1/search?q=x', 200]] as const) {
        const res = await fetch(berth.url + path);
        const text = await res.text();
        expect(res.status, path).to.equal(status);
        expect(res.headers.get('content-type'), path).to.match(/^application\/json/);
        expect(Number(res.headers.get('content-length')), path).to.equal(Buffer.byteLength(text));
        expect(() => JSON.parse(text), path).not.to.throw();
      }
    } finally {
      await berth.stop();
    }
    expect(JSON.parse(readFileSync(report, 'utf8'))).to.deep.equal([]);
  });
});
