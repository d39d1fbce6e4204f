// What the web tests share: the cookies a response sets, the CSRF token a page carries, and a signed-in
// browser session made through the sign-in form.
import type { Registry, RawResponse } from './registry.ts';

export function cookiesOf(res: RawResponse): string {
  return (res.headers['set-cookie'] ?? '').split(/,(?=\s*berth_)/).map((c) => c.split(';')[0]!.trim()).join('; ');
}

export function csrfIn(text: string): string {
  return /name="_csrf" value="([^"]+)"/.exec(text)![1]!;
}

export const FORM = 'application/x-www-form-urlencoded';

/** Signs in through the form; the session's cookie header. */
export async function signIn(registry: Registry, username: string, password: string): Promise<string> {
  const form = await registry.request('GET', '/signin');
  const body = new URLSearchParams({ username, password, _csrf: csrfIn(form.text) }).toString();
  const res = await registry.request('POST', '/signin', { body, headers: { Cookie: cookiesOf(form), 'Content-Type': FORM } });
  if (res.status !== 302) throw new Error(`sign-in failed: ${res.status}`);
  return cookiesOf(res);
}
