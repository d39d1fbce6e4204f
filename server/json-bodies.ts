// JSON bodies become strings when they are set, as Koa itself would make them when it responds. Koa's own
// body setter first asks whether an object is a fetch `Response`, and the first touch of that global loads
// Node's whole fetch implementation (undici: about 2 MiB of heap and 10 MiB resident) into a server that
// never fetches unless a mirror, replication or webhook needs it.
import type Koa from 'koa';

function isJsonValue(value: unknown): value is object {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return Array.isArray(value);
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

export function serialiseJsonBodies(app: Koa): void {
  let proto: object | null = app.response;
  let body: PropertyDescriptor | undefined;
  while (proto && !body) {
    body = Object.getOwnPropertyDescriptor(proto, 'body');
    proto = Object.getPrototypeOf(proto);
  }
  const { get, set } = body ?? {};
  if (!get || !set) throw new Error('Koa response has no body accessor');
  Object.defineProperty(app.response, 'body', {
    configurable: true,
    get,
    set(this: Koa.Response, value: unknown) {
      if (isJsonValue(value)) {
        if (!this.type || !/\bjson\b/i.test(this.type)) this.type = 'json';
        value = JSON.stringify(value);
      }
      set.call(this, value);
    },
  });
}
