import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCOPES, type AnyRoute, type Scope } from '../../api/route.js';
import { testDatabase, testTemporal } from '../helpers/stack.js';
import { call, keyedRoutes, samplePath, startTestApi, type TestApi } from './helpers.js';

/**
 * 401/403/429 over every registered route, whatever routes exist: the list
 * comes from allRoutes(deps) at run time, so new routes are covered unchanged.
 */
describe('auth and rate-limit matrix over every route', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let api: TestApi;
  let clock = new Date();
  const keys: Record<string, string> = {};
  const onlyScope: Partial<Record<Scope, string>> = {};
  const allButScope: Partial<Record<Scope, string>> = {};

  beforeAll(async () => {
    db = await testDatabase();
    temporal = await testTemporal();
    api = await startTestApi({
      databaseUrl: db.url,
      temporal: temporal.client,
      now: () => clock,
      // Every 401 of the matrix comes from one address; the failed-auth budget has its own tests (telemetry.test.ts).
      settings: { RATE_LIMIT_DEFAULT: '1000/1m', RATE_LIMIT_KEY: 'off', RATE_LIMIT_ANONYMOUS: '1000/1m', RATE_LIMIT_AUTH_FAILURES: 'off' },
    });
    const store = api.security.store;
    const make = async (scopes: Scope[], extra: { expiresAt?: Date } = {}) => (await store.create({ name: `matrix ${scopes.join(' ')}`, scopes, actor: 'test', ...extra })).plaintext;
    keys.admin = await make(['admin']);
    for (const scope of SCOPES.filter((s) => s !== 'admin')) {
      onlyScope[scope] = await make([scope]);
      allButScope[scope] = await make(SCOPES.filter((s) => s !== scope && s !== 'admin'));
    }
    allButScope.admin = await make(SCOPES.filter((s) => s !== 'admin'));
    onlyScope.admin = keys.admin;
    keys.revoked = await make(['admin']);
    await store.revoke(keys.revoked, { actor: 'test' });
    keys.expired = await make(['admin'], { expiresAt: new Date(clock.getTime() + 60_000) });
    clock = new Date(clock.getTime() + 120_000);
    keys.unknown = keys.admin.replace(/_([0-9a-f]{12})_/, '_abcdefabcdef_');
  });

  afterAll(async () => {
    await api?.close();
    await temporal?.close();
    await db?.drop();
  });

  const failures: string[] = [];
  const expectStatus = (route: AnyRoute, what: string, res: { status: number; headers: Headers }, ok: (s: number) => boolean, extra?: () => string | undefined) => {
    const problem = !ok(res.status) ? `got ${res.status}` : extra?.();
    if (problem) failures.push(`${route.operationId} (${route.method.toUpperCase()} ${route.path}) ${what}: ${problem}`);
  };

  it('discovers the registered routes, including the key admin routes', () => {
    const ids = api.routes.map((r) => r.operationId);
    expect(ids).toEqual(expect.arrayContaining(['createApiKey', 'listApiKeys', 'getApiKey', 'rotateApiKey', 'revokeApiKey']));
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('401 without a key, with a malformed header, an unknown, a revoked or an expired key', async () => {
    for (const route of keyedRoutes(api.routes)) {
      const path = samplePath(route);
      const body = route.method === 'get' ? undefined : {};
      const is401 = (what: string, challenge: RegExp, detail?: RegExp) => (res: Awaited<ReturnType<typeof call>>) =>
        expectStatus(route, what, res, (s) => s === 401, () => {
          const www = res.headers.get('www-authenticate') ?? '';
          if (!challenge.test(www)) return `WWW-Authenticate "${www}"`;
          if (!res.headers.get('content-type')?.includes('application/problem+json')) return 'not problem+json';
          if (res.headers.get('ratelimit-limit')) return 'rate-limit headers on an unauthenticated answer';
          if (detail && !detail.test(res.body?.detail ?? '')) return `detail "${res.body?.detail}"`;
          return undefined;
        });
      is401('no key', /^Bearer realm="prospector"$/)(await call(api.url, route.method, path, { body }));
      is401('Basic auth', /error="invalid_request"/)(await call(api.url, route.method, path, { body, headers: { authorization: 'Basic dXNlcjpwYXNz' } }));
      is401('unknown key', /error="invalid_token"/, /not valid/)(await call(api.url, route.method, path, { body, key: keys.unknown }));
      is401('garbage X-API-Key', /error="invalid_token"/)(await call(api.url, route.method, path, { body, key: 'letmein', header: 'x-api-key' }));
      is401('revoked key', /error="invalid_token"/, /revoked/)(await call(api.url, route.method, path, { body, key: keys.revoked }));
      is401('expired key', /error="invalid_token"/, /expired/)(await call(api.url, route.method, path, { body, key: keys.expired }));
    }
    expect(failures).toEqual([]);
  });

  it('403 with a valid key lacking the scope; the scope (or admin) gets through with rate-limit headers', async () => {
    for (const route of keyedRoutes(api.routes)) {
      const scope = (route.auth as { scope: Scope }).scope;
      const path = samplePath(route);
      const body = route.method === 'get' ? undefined : {};
      const denied = await call(api.url, route.method, path, { body, key: allButScope[scope]! });
      expectStatus(route, 'key without the scope', denied, (s) => s === 403, () =>
        (denied.headers.get('www-authenticate') ?? '').includes(`error="insufficient_scope", scope="${scope}"`) ? undefined : 'no insufficient_scope challenge');
      const passes = (what: string, res: Awaited<ReturnType<typeof call>>) =>
        expectStatus(route, what, res, (s) => s !== 401 && s !== 403 && s < 500, () =>
          res.headers.get('ratelimit-limit') && res.headers.get('ratelimit-remaining') && res.headers.get('ratelimit-reset') ? undefined : 'no RateLimit-* headers');
      passes('key with the scope', await call(api.url, route.method, path, { body, key: onlyScope[scope]! }));
      passes('admin key via X-API-Key', await call(api.url, route.method, path, { body, key: keys.admin, header: 'x-api-key' }));
    }
    for (const route of api.routes.filter((r) => typeof r.auth !== 'object')) {
      const res = await call(api.url, route.method, samplePath(route), { body: route.method === 'get' ? undefined : {} });
      expectStatus(route, `${String(route.auth)} route without a key`, res, (s) => s < 500, () => (res.headers.get('ratelimit-limit') ? undefined : 'no RateLimit-* headers'));
    }
    expect(failures).toEqual([]);
  });

  it('writes one audit row per decision, with key id, route, method, request and trace ids, and status', async () => {
    const route = api.routes.find((r) => r.operationId === 'listApiKeys')!;
    const traceId = '4bf92f3577b34da6a3ce929d0e0736aa';
    await call(api.url, 'get', samplePath(route), { key: keys.admin, headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01`, 'x-request-id': 'matrix-trace-1' } });
    await api.security.audit.flush();

    const { rows } = await db.pool.query('SELECT * FROM api_auth_audit ORDER BY id');
    const keyed = keyedRoutes(api.routes).length;
    const count = (d: string) => rows.filter((r) => r.decision === d).length;
    expect(count('deny_unauthenticated')).toBe(4 * keyed);
    expect(count('deny_revoked')).toBe(keyed);
    expect(count('deny_expired')).toBe(keyed);
    expect(count('deny_scope')).toBe(keyed);
    expect(count('allow')).toBe(2 * keyed + 1);
    for (const r of rows) {
      expect(r.request_id).toBeTruthy();
      expect(r.route).toMatch(/^(GET|POST|PUT|PATCH|DELETE) \/v1\//);
      expect(r.method).toBe(r.route.split(' ')[0]);
      if (r.decision === 'deny_scope') expect(r.status).toBe(403);
      else if (r.decision.startsWith('deny_')) expect(r.status).toBe(401);
      else expect([401, 403]).not.toContain(r.status);
      if (['allow', 'deny_scope', 'deny_revoked', 'deny_expired'].includes(r.decision)) expect(r.key_id).toMatch(/^key_[0-9a-f]{12}$/);
    }
    expect(rows.filter((r) => r.key_prefix === 'abcdefabcdef')).toHaveLength(keyed);
    const traced = rows.find((r) => r.request_id === 'matrix-trace-1')!;
    expect(traced).toMatchObject({ decision: 'allow', trace_id: traceId, status: 200, route: 'GET /v1/keys', operation_id: 'listApiKeys' });
    // last_used_at follows allowed calls.
    const used = await db.pool.query(`SELECT last_used_at FROM api_keys WHERE id = $1`, [traced.key_id]);
    expect(used.rows[0].last_used_at).toBeInstanceOf(Date);
  });

  it('every response seen matched the OpenAPI document', () => {
    expect(api.violations).toEqual([]);
  });
});

describe('429 over every route, per route and per key', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let api: TestApi;

  beforeAll(async () => {
    db = await testDatabase();
    temporal = await testTemporal();
    api = await startTestApi({
      databaseUrl: db.url,
      temporal: temporal.client,
      settings: { RATE_LIMIT_DEFAULT: '2/1m', RATE_LIMIT_KEY: 'off', RATE_LIMIT_ANONYMOUS: '2/1m', RATE_LIMIT_ROUTES: '{"listApiKeys":"4/1m"}' },
    });
  });
  afterAll(async () => {
    await api?.close();
    await temporal?.close();
    await db?.drop();
  });

  it('each route has its own budget per key; the call over it gets 429 with Retry-After', async () => {
    const { plaintext: key } = await api.security.store.create({ name: 'limited', scopes: ['admin'], actor: 'test' });
    const failures: string[] = [];
    for (const route of api.routes) {
      const limit = route.operationId === 'listApiKeys' ? 4 : 2;
      const keyed = typeof route.auth === 'object';
      const send = () => call(api.url, route.method, samplePath(route), { body: route.method === 'get' ? undefined : {}, key: keyed ? key : undefined });
      for (let i = 1; i <= limit; i++) {
        const res = await send();
        if (res.status === 429 || res.headers.get('ratelimit-limit') !== String(limit) || res.headers.get('ratelimit-remaining') !== String(limit - i)) {
          failures.push(`${route.operationId} call ${i}: ${res.status}, limit ${res.headers.get('ratelimit-limit')}, remaining ${res.headers.get('ratelimit-remaining')}`);
        }
      }
      const over = await send();
      const retry = Number(over.headers.get('retry-after'));
      if (over.status !== 429) failures.push(`${route.operationId}: call ${limit + 1} got ${over.status}`);
      else {
        if (!(retry >= 1 && retry <= 60)) failures.push(`${route.operationId}: Retry-After ${over.headers.get('retry-after')}`);
        if (over.headers.get('ratelimit-remaining') !== '0') failures.push(`${route.operationId}: remaining ${over.headers.get('ratelimit-remaining')} on 429`);
        if (!over.headers.get('content-type')?.includes('application/problem+json') || over.body?.status !== 429) failures.push(`${route.operationId}: 429 is not problem+json`);
      }
    }
    expect(failures).toEqual([]);
    await api.security.audit.flush();
    const { rows } = await db.pool.query(`SELECT route, status, key_id FROM api_auth_audit WHERE decision = 'deny_rate'`);
    expect(rows).toHaveLength(api.routes.length);
    expect(rows.every((r) => r.status === 429)).toBe(true);
  });

  it('a key-wide limit (the key’s own rate_limit) spans routes', async () => {
    const { plaintext: key } = await api.security.store.create({ name: 'key-wide', scopes: ['admin'], rateLimit: '3/1m', actor: 'test' });
    const list = { method: 'get', path: '/v1/keys' };
    const get = { method: 'get', path: '/v1/keys/key_000000000000' };
    const statuses = [];
    for (const r of [list, get, list]) statuses.push((await call(api.url, r.method, r.path, { key })).status);
    expect(statuses).not.toContain(429);
    const over = await call(api.url, get.method, get.path, { key });
    expect(over.status).toBe(429);
    expect(over.body.detail).toContain('across all routes');
    expect(over.headers.get('ratelimit-limit')).toBe('3');
  });

  it('every response seen matched the OpenAPI document', () => {
    expect(api.violations).toEqual([]);
  });
});
