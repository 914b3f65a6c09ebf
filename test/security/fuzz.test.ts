import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { AnyRoute } from '../../api/route.js';
import { testDatabase, testTemporal } from '../helpers/stack.js';
import { call, samplePath, startTestApi, type TestApi } from './helpers.js';

/**
 * Random and malformed requests to every registered route: whatever arrives,
 * the answer is a 2xx–4xx (problem+json for errors), never a 5xx.
 */
describe('fuzzing every route', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let api: TestApi;
  let admin: string;

  beforeAll(async () => {
    db = await testDatabase();
    temporal = await testTemporal();
    api = await startTestApi({
      databaseUrl: db.url,
      temporal: temporal.client,
      // Random keys fail often: with the failed-auth budget on, the address would soon get only 429s.
      settings: { RATE_LIMIT_DEFAULT: '100000/1m', RATE_LIMIT_KEY: 'off', RATE_LIMIT_ANONYMOUS: '100000/1m', RATE_LIMIT_AUTH_FAILURES: 'off', API_BODY_LIMIT: '64kb' },
    });
    admin = (await api.security.store.create({ name: 'fuzz', scopes: ['admin'], actor: 'test' })).plaintext;
  });
  afterAll(async () => {
    await api?.close();
    await temporal?.close();
    await db?.drop();
  });

  const ascii = (max: number) => fc.stringMatching(new RegExp(`^[\\x20-\\x7e]{0,${max}}$`));
  const nasty = fc.constantFrom('', ' ', '..', '../../etc/passwd', '%00', '\u0000', 'ü', '💥', 'null', 'undefined', '-1', '1e309', 'NaN', "' OR 1=1 --", 'a'.repeat(2_000), 'key_000000000000', '{}', '[]');
  const text = fc.oneof(fc.string({ maxLength: 40 }), nasty);

  /** Bodies: any JSON, objects with the route's own field names and wrong-typed values, and broken JSON. */
  function bodies(route: AnyRoute) {
    const fields = fieldNames(route);
    const value = fc.oneof(fc.jsonValue({ maxDepth: 3 }), text, fc.integer(), fc.double(), fc.boolean(), fc.constant(null));
    const shaped = fields.length > 0 ? fc.dictionary(fc.constantFrom(...fields), value, { maxKeys: fields.length }) : fc.object({ maxDepth: 2 });
    return fc.oneof(
      fc.record({ kind: fc.constant('json' as const), value: fc.oneof(shaped, fc.jsonValue({ maxDepth: 4 })) }),
      fc.record({ kind: fc.constant('raw' as const), value: fc.oneof(ascii(200), fc.constantFrom('{"a":', '{', '[1,2', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{"x":1}}}', 'null', '"', '\u0000', JSON.stringify('x'.repeat(100_000)))) }),
      fc.record({ kind: fc.constant('raw' as const), value: fc.tuple(fc.integer({ min: 1, max: 10_000 }), fc.constantFrom(...NESTINGS)).map(([depth, nest]) => nest(depth)) }),
      fc.record({ kind: fc.constant('none' as const), value: fc.constant(undefined) }),
    );
  }

  function requests(route: AnyRoute) {
    return fc.record({
      params: fc.array(text, { minLength: 5, maxLength: 5 }),
      query: fc.dictionary(fc.oneof(fc.constantFrom(...queryNames(route), 'limit', 'cursor', 'q'), ascii(10)), fc.oneof(text, fc.array(text, { maxLength: 3 })), { maxKeys: 4 }),
      body: bodies(route),
      contentType: fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', 'application/merge-patch+json', 'application/json; charset=latin1'),
      auth: fc.oneof(fc.constant(admin), fc.constant(admin), fc.constant(undefined), ascii(80), fc.constant(`Bearer ${'a'.repeat(200)}`)),
    });
  }

  it('a JSON body nested 10,000 deep gets 400 problem+json on every route that takes a body, before auth or signature', async () => {
    const failures: string[] = [];
    for (const route of api.routes.filter((r) => r.method !== 'get')) {
      for (const [shape, nest] of NESTINGS.map((n, i) => [['arrays', 'objects', 'mixed'][i]!, n] as const)) {
        for (const key of [admin, undefined]) {
          const res = await call(api.url, route.method, samplePath(route), { rawBody: nest(10_000), key });
          const ok = res.status === 400 && res.headers.get('content-type')?.includes('application/problem+json') && res.body?.title === 'JSON nested too deeply' && /deeper than 64 levels/.test(res.body?.detail);
          if (!ok) failures.push(`${route.operationId} ${shape} ${key ? 'with' : 'without'} a key: ${res.status} ${res.text.slice(0, 120)}`);
        }
      }
      // At the limit the body is parsed and goes on to the route (whatever it answers, not the depth problem).
      const atLimit = await call(api.url, route.method, samplePath(route), { rawBody: NESTINGS[0]!(64), key: admin });
      if (atLimit.status >= 500 || atLimit.body?.title === 'JSON nested too deeply') failures.push(`${route.operationId} at depth 64: ${atLimit.status} ${atLimit.text.slice(0, 120)}`);
    }
    expect(failures).toEqual([]);
    expect(api.routes.some((r) => r.operationId === 'hubspotFormWebhook' && r.method !== 'get')).toBe(true);
  });

  it('no request to any route gets a 5xx', async () => {
    const failures: string[] = [];
    for (const route of api.routes) {
      await fc.assert(
        fc.asyncProperty(requests(route), async (r) => {
          let i = 0;
          const path = `/v1${route.path.replace(/:(\w+)/g, () => encodeURIComponent(r.params[i++] ?? 'x'))}`;
          const qs = new URLSearchParams();
          for (const [k, v] of Object.entries(r.query)) for (const item of [v].flat()) qs.append(k, item);
          const headers: Record<string, string> = { 'content-type': r.contentType };
          if (r.auth === admin) headers.authorization = `Bearer ${admin}`;
          else if (r.auth !== undefined) headers.authorization = r.auth;
          const rawBody = route.method === 'get' || r.body.kind === 'none' ? undefined : r.body.kind === 'raw' ? (r.body.value as string) : JSON.stringify(r.body.value);
          const res = await call(api.url, route.method, `${path}${qs.size ? `?${qs}` : ''}`, { rawBody, headers });
          const problemJson = res.headers.get('content-type')?.includes('application/problem+json');
          if (res.status >= 500 || (res.status >= 400 && !problemJson)) {
            failures.push(`${route.operationId} ${route.method.toUpperCase()} ${path}: ${res.status} ${res.text.slice(0, 200)}`);
            return false;
          }
          return true;
        }),
        { numRuns: 40, seed: Number(process.env.FUZZ_SEED ?? 20260101), endOnFailure: true },
      ).catch(() => undefined);
    }
    // Both lists at once: a 5xx and a response off its declared schema are both contract breaks.
    expect({ failures, violations: api.violations }).toEqual({ failures: [], violations: [] });
  });
});

/** JSON texts nested `depth` deep: arrays, objects, and both alternating (valid JSON each). */
const NESTINGS: ((depth: number) => string)[] = [
  (depth) => `${'['.repeat(depth)}${']'.repeat(depth)}`,
  (depth) => `${'{"a":'.repeat(depth - 1)}{}${'}'.repeat(depth - 1)}`,
  (depth) => {
    let open = '';
    let close = '';
    for (let i = 0; i < depth; i++) {
      open += i % 2 ? '[' : '{"k":';
      close = (i % 2 ? ']' : '}') + close;
    }
    return `${open}"x"${close}`;
  },
];

function objectKeys(schema: z.ZodType | undefined): string[] {
  if (!schema) return [];
  try {
    const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as { properties?: Record<string, unknown> };
    return Object.keys(json.properties ?? {});
  } catch {
    return [];
  }
}

function fieldNames(route: AnyRoute): string[] {
  return objectKeys(route.body);
}

function queryNames(route: AnyRoute): string[] {
  const names = objectKeys(route.query);
  return names.length ? names : ['x'];
}
