// README's configuration table is made from the settings themselves (server/config.ts SETTINGS), so it
// cannot drift: this test fails when they differ. `UPDATE_README=1 npx mocha test/unit/readme-config.test.ts`
// writes the table into README.
import { expect } from 'chai';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SETTINGS } from '../../server/config.ts';

const README = join(import.meta.dirname, '..', '..', 'README.md');
const BEGIN = '<!-- configuration table: made from server/config.ts by test/unit/readme-config.test.ts -->';
const END = '<!-- end of configuration table -->';

function table(): string {
  const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const rows = Object.entries(SETTINGS).map(([key, s]) => `| \`${s.env}\` (\`${key}\`) | ${s.default === undefined || s.default === '' ? '' : `\`${cell(s.default)}\``} | ${cell(s.help)} |`);
  return [BEGIN, '| Variable (file key) | Default | Meaning |', '| --- | --- | --- |', ...rows, END].join('\n');
}

describe('README configuration table', () => {
  it('lists every setting with its default and meaning, as server/config.ts has them', () => {
    const readme = readFileSync(README, 'utf8');
    const start = readme.indexOf(BEGIN);
    const end = readme.indexOf(END);
    expect(start, 'README has the configuration table markers').to.be.greaterThan(-1);
    const current = readme.slice(start, end + END.length);
    if (process.env.UPDATE_README === '1' && current !== table()) writeFileSync(README, readme.slice(0, start) + table() + readme.slice(end + END.length));
    else expect(current).to.equal(table());
  });
});
