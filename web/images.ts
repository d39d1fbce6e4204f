// Logos and social cards, made with sharp. An upload is decoded under a pixel limit (a small file can
// declare a huge image: a decompression bomb), must be PNG, JPEG or WebP, loses its metadata (sharp writes
// none unless asked), and is stored content-addressed as 256 px and 64 px WebP and PNG. Cards are rendered
// from SVG once per content and kept in storage.
import { createHash } from 'node:crypto';
import type Sharp from 'sharp';

// sharp (libvips) costs tens of MiB of resident memory once loaded: only a process that makes an image loads it.
let loaded: Promise<typeof Sharp> | undefined;
const loadSharp = () => (loaded ??= import('sharp').then((m) => m.default));
import { architectureLabel, baseName, decodeName, layout, UNFLUSHED, type RepositoryEntry, type StorageDriver } from '../storage/index.ts';
import { esc } from './html.ts';

export const MAX_LOGO_BYTES = 4 * 1024 * 1024;
/** 25 megapixels: any real logo is far below; a bomb is refused before a pixel is decoded. */
export const MAX_LOGO_PIXELS = 5000 * 5000;
export const LOGO_SIZES = [256, 64] as const;
const FORMATS = ['png', 'jpeg', 'webp'];
/** A logo file: the upload's sha256, a size, a format. */
export const LOGO_FILE_RE = /^([a-f0-9]{64})-(?:256|64)\.(?:png|webp)$/;

/**
 * Where a repository's logo is served: under the repository's name, so that its visibility decides who
 * gets it (the file alone, named by a hash, would go to anyone who learnt the hash).
 */
export function logoUrl(name: string, hex: string, size: 256 | 64, format: 'png' | 'webp'): string {
  return `/images/${name}/${hex}-${size}.${format}`;
}

export class LogoError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LogoError';
  }
}

/** Checks and converts an upload; returns the sha256 hex its images are stored under. */
export async function storeLogo(driver: StorageDriver, upload: Buffer): Promise<string> {
  const sharp = await loadSharp();
  if (upload.length === 0) throw new LogoError('no file was uploaded');
  if (upload.length > MAX_LOGO_BYTES) throw new LogoError(`the logo is larger than ${MAX_LOGO_BYTES / 1024 / 1024} MiB`);
  let meta: { format?: string; width?: number; height?: number };
  try {
    // The header only (no pixel is decoded), without sharp's own pixel limit: the count is judged below,
    // so that a bomb is told from a file that is not an image by what it is, not by an error's wording.
    meta = await sharp(upload, { limitInputPixels: false }).metadata();
  } catch {
    throw new LogoError('the file is not an image: upload a PNG, JPEG or WebP logo');
  }
  const { format } = meta;
  if ((meta.width ?? 0) * (meta.height ?? 0) > MAX_LOGO_PIXELS) {
    throw new LogoError(`the image has more than ${MAX_LOGO_PIXELS / 1_000_000} million pixels; upload a smaller logo`);
  }
  if (!format || !FORMATS.includes(format)) throw new LogoError(`a ${format} image is not accepted: upload a PNG, JPEG or WebP logo`);
  const hex = createHash('sha256').update(upload).digest('hex');
  try {
    for (const size of LOGO_SIZES) {
      const resized = sharp(upload, { limitInputPixels: MAX_LOGO_PIXELS, failOn: 'error' }).rotate().resize(size, size, {
        fit: 'contain',
        background: { r: 0, g: 0, b: 0, alpha: 0 },
      });
      const [png, webp] = await Promise.all([resized.clone().png().toBuffer(), resized.clone().webp().toBuffer()]);
      await driver.putContent(layout.image(`${hex}-${size}.png`), png);
      await driver.putContent(layout.image(`${hex}-${size}.webp`), webp);
    }
  } catch (err) {
    throw new LogoError(`the image could not be decoded: ${(err as Error).message.split('\n')[0]}`);
  }
  return hex;
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * What a repository's card is drawn from, as a key: never the request's Host (which the client chooses),
 * only the configured public host, so that a repository has one card, not one per Host header.
 */
export function cardKey(entry: RepositoryEntry, publicHost: string | undefined): string {
  const labels = [...entry.os, ...entry.architectures];
  return createHash('sha256')
    .update(JSON.stringify([2, publicHost ?? '', entry.name, entry.description, labels, entry.logo ?? '']))
    .digest('hex');
}

/**
 * The social card of a repository (1200×630 PNG), from storage when this content was drawn before. A
 * repository's folder holds its current card only: drawing a new one removes the ones before it.
 */
export async function socialCard(driver: StorageDriver, entry: RepositoryEntry, publicHost: string | undefined): Promise<Buffer> {
  const sharp = await loadSharp();
  const labels = [...entry.os, ...entry.architectures];
  const path = layout.card(entry.name, cardKey(entry, publicHost));
  const cached = await driver.getContent(path);
  if (cached) return cached;

  let x = 80;
  const badges = labels.slice(0, 8).map((label) => {
    const width = 32 + label.length * 19;
    const fill = label === 'windows' ? '#fff8c5' : label === 'linux' ? '#dafbe1' : '#ddf4ff';
    const svg = `<rect x="${x}" y="430" width="${width}" height="56" rx="8" fill="${fill}" stroke="#0b3d5c"/><text x="${x + 14}" y="468" font-size="30" fill="#1b1f24">${esc(label)}</text>`;
    x += width + 16;
    return svg;
  });
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="1200" height="630">
<rect width="1200" height="630" fill="#f6f8fa"/><rect width="1200" height="90" fill="#0b3d5c"/>
<g font-family="DejaVu Sans, sans-serif">
<text x="80" y="60" font-size="36" fill="#ffffff" font-weight="bold">Berth${publicHost ? ` · ${esc(truncate(publicHost, 50))}` : ''}</text>
<text x="80" y="220" font-size="64" font-weight="bold" fill="#1b1f24">${esc(truncate(entry.name, 30))}</text>
<text x="80" y="320" font-size="34" fill="#57606a">${esc(truncate(entry.description || 'A container image', 60))}</text>
${badges.join('')}
</g></svg>`;
  let card = sharp(Buffer.from(svg));
  if (entry.logo) {
    const logo = await driver.getContent(layout.image(`${entry.logo}-256.png`));
    if (logo) card = sharp(await card.png().toBuffer()).composite([{ input: logo, top: 140, left: 880 }]);
  }
  const png = await card.png().toBuffer();
  // A card is drawn again if a crash loses it.
  await driver.putContent(path, png, UNFLUSHED);
  for (const older of await driver.list(layout.cardsOf(entry.name))) if (older !== path) await driver.delete(older);
  return png;
}

/**
 * Whether a folder of cards is to go: its repository went (no catalog entry). A card drawn from an older
 * state of a repository that stays is removed here, and the folder kept.
 */
export function staleCards(driver: StorageDriver, entryOf: (name: string) => Promise<RepositoryEntry | undefined>, publicHost: string | undefined) {
  return async (dir: string): Promise<boolean> => {
    const entry = await entryOf(decodeName(baseName(dir)));
    if (!entry) return true;
    const current = layout.card(entry.name, cardKey(entry, publicHost));
    for (const card of await driver.list(dir)) if (card !== current) await driver.delete(card);
    return false;
  };
}

export function platformLabel(p: { os: string; architecture: string; variant?: string }): string {
  return `${p.os}/${architectureLabel(p)}`;
}

/** The pages' one door to logos and cards in storage: they never hold the driver themselves. */
export class Logos {
  constructor(
    private readonly driver: StorageDriver,
    private readonly publicHost: string | undefined,
  ) {}

  /** Checks, converts and stores an upload (LogoError when refused); the hex its images are named by. */
  store(upload: Buffer): Promise<string> {
    return storeLogo(this.driver, upload);
  }

  /** One stored logo image by its file name (LOGO_FILE_RE), or undefined. */
  read(file: string): Promise<Buffer | undefined> {
    return LOGO_FILE_RE.test(file) ? this.driver.getContent(layout.image(file)) : Promise.resolve(undefined);
  }

  card(entry: RepositoryEntry): Promise<Buffer> {
    return socialCard(this.driver, entry, this.publicHost);
  }
}
