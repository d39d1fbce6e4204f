// What users upload to the catalog: README Markdown with hostile HTML comes out harmless; logos are
// converted, or refused with a clear message (not an image, too large, a decompression bomb).
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { FilesystemDriver, layout } from '../../storage/index.ts';
import { LogoError, renderMarkdown, storeLogo } from '../../web/index.ts';

/** A PNG whose header declares `width`×`height` pixels, with one tiny row of data: a bomb's header. */
function pngDeclaring(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 0, 0, 0, 0], 8); // 8-bit greyscale
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.alloc(1024))), chunk('IEND', Buffer.alloc(0))]);
}

describe('unit: README sanitising', () => {
  it('renders Markdown and keeps ordinary links and images', async () => {
    const out = await renderMarkdown('# Title\n\n[docs](https://example.com/docs) ![logo](https://example.com/l.png)\n\n```sh\ndocker run x\n```');
    expect(out).to.include('<h1>Title</h1>');
    expect(out).to.include('<a href="https://example.com/docs" rel="nofollow noopener noreferrer">docs</a>');
    expect(out).to.include('<img src="https://example.com/l.png" alt="logo" />');
    expect(out).to.include('<code class="language-sh">');
  });

  it('removes script tags, event handlers, javascript: and data: links, styles and frames', async () => {
    const out = await renderMarkdown(
      [
        '<script>alert(1)</script>',
        '<img src="x" onerror="alert(2)">',
        '[click](javascript:alert(3))',
        '<a href="JaVaScRiPt:alert(4)">x</a>',
        '<a href="data:text/html,<script>alert(5)</script>">y</a>',
        '<div style="background:url(javascript:alert(6))" onclick="alert(7)">z</div>',
        '<iframe src="https://evil.example"></iframe>',
        '<svg><script>alert(8)</script></svg>',
      ].join('\n\n'),
    );
    expect(out).to.not.match(/<script|onerror|onclick|javascript:|data:text|<iframe|<svg|style=/i);
    expect(out).to.include('z');
  });
});

describe('unit: logo upload', () => {
  let dir: string;
  let driver: FilesystemDriver;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-logo-'));
    driver = new FilesystemDriver(dir);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('stores 256 and 64 px WebP and PNG, content-addressed, without the metadata it came with', async () => {
    const upload = await sharp({ create: { width: 600, height: 300, channels: 3, background: '#336699' } })
      .jpeg()
      .withMetadata({ exif: { IFD0: { Copyright: 'secret camera owner' } } })
      .toBuffer();
    expect((await sharp(upload).metadata()).exif).to.not.equal(undefined);
    const hex = await storeLogo(driver, upload);
    expect(hex).to.match(/^[a-f0-9]{64}$/);
    for (const size of [256, 64]) {
      for (const format of ['png', 'webp'] as const) {
        const stored = await driver.getContent(layout.image(`${hex}-${size}.${format}`));
        const meta = await sharp(stored!).metadata();
        expect(meta).to.include({ format, width: size, height: size });
        expect(meta.exif).to.equal(undefined);
      }
    }
  });

  it('refuses a file that is not an image', async () => {
    const err = await storeLogo(driver, Buffer.from('<html>not an image</html>')).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(LogoError);
    expect((err as Error).message).to.equal('the file is not an image: upload a PNG, JPEG or WebP logo');
  });

  it('refuses an image format other than PNG, JPEG or WebP', async () => {
    const gif = await sharp({ create: { width: 8, height: 8, channels: 3, background: 'red' } }).gif().toBuffer();
    const err = await storeLogo(driver, gif).catch((e: unknown) => e);
    expect((err as Error).message).to.match(/a gif image is not accepted/);
  });

  it('refuses an oversized file before decoding it', async () => {
    const err = await storeLogo(driver, Buffer.alloc(5 * 1024 * 1024, 1)).catch((e: unknown) => e);
    expect((err as Error).message).to.match(/larger than 4 MiB/);
  });

  it('refuses a decompression bomb by its pixel count, storing nothing', async () => {
    const bomb = pngDeclaring(100_000, 100_000);
    expect(bomb.length).to.be.below(10_000);
    const err = await storeLogo(driver, bomb).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(LogoError);
    expect((err as Error).message).to.match(/more than 25 million pixels/);
    expect(await driver.list('/web/images')).to.deep.equal([]);
  });
});
