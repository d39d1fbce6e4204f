// Form bodies: URL-encoded fields, and multipart/form-data for the logo upload (the only file field). Read
// with a byte limit; a logo is a few MB at most, so it is held in memory, unlike registry blobs.
import type { Context } from 'koa';

export type ReadBody = (ctx: Context, limit: number, what: string) => Promise<Buffer>;

export interface Form {
  fields: Map<string, string>;
  file?: { name: string; content: Buffer };
}

export async function readForm(ctx: Context, readBody: ReadBody, limit: number): Promise<Form> {
  const body = await readBody(ctx, limit, 'form');
  const type = ctx.get('Content-Type');
  const boundary = /^multipart\/form-data;.*boundary="?([^";]+)"?/i.exec(type)?.[1];
  if (!boundary) return { fields: new Map(new URLSearchParams(body.toString('utf8'))) };
  const form: Form = { fields: new Map() };
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  // Prepending CRLF makes the first delimiter look like every other one.
  const data = Buffer.concat([Buffer.from('\r\n'), body]);
  let at = data.indexOf(delimiter);
  while (at >= 0) {
    const start = at + delimiter.length;
    if (data.subarray(start, start + 2).toString() === '--') break;
    const next = data.indexOf(delimiter, start);
    if (next < 0) break;
    const part = data.subarray(start + 2, next);
    const headerEnd = part.indexOf('\r\n\r\n');
    if (headerEnd >= 0) {
      const headers = part.subarray(0, headerEnd).toString('utf8');
      const content = part.subarray(headerEnd + 4);
      const name = /name="([^"]*)"/i.exec(headers)?.[1];
      const filename = /filename="([^"]*)"/i.exec(headers)?.[1];
      if (name !== undefined && filename !== undefined) form.file = { name, content };
      else if (name !== undefined) form.fields.set(name, content.toString('utf8'));
    }
    at = next;
  }
  return form;
}
