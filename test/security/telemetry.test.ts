import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../../lib/domain/prng.js';
import { insertAuthAudit, type AuthAuditRow } from '../../lib/store/auth-audit.js';
import { claimReceipt } from '../../lib/store/webhooks.js';
import { testDatabase, testTemporal } from '../helpers/stack.js';
import { call, LogCapture, startTestApi, type TestApi } from './helpers.js';

/**
 * What an unauthenticated flood can make the API keep: /metrics stays the
 * same size (route templates or "unmatched", never paths), logs carry no
 * addresses from paths, an address over its failed-auth budget gets 429 and
 * is counted in the auth audit rather than written a row per request, and the
 * auth audit and webhook receipts are pruned by the periodic pruning.
 */
describe('bounded telemetry, failed-auth limits and retention', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let api: TestApi;
  let admin: string;
  const logs = new LogCapture();
  const LIMIT = 20;

  beforeAll(async () => {
    db = await testDatabase();
    temporal = await testTemporal();
    api = await startTestApi({
      databaseUrl: db.url,
      temporal: temporal.client,
      logs,
      pruneEveryMs: 300,
      settings: {
        RATE_LIMIT_AUTH_FAILURES: `${LIMIT}/1m`,
        RATE_LIMIT_DEFAULT: '100000/1m',
        RATE_LIMIT_KEY: 'off',
        RATE_LIMIT_ANONYMOUS: '100000/1m',
        AUTH_AUDIT_RETENTION: '30d',
        LOG_LEVEL: 'trace',
      },
    });
    admin = (await api.security.store.create({ name: 'telemetry admin', scopes: ['admin'], actor: 'test' })).plaintext;
  });
  afterAll(async () => {
    await api?.close();
    await temporal?.close();
    await db?.drop();
  });

  /** A request from a client address of the test's choosing (the app trusts X-Forwarded-For from loopback, like a local proxy). */
  const from = (address: string, method: string, path: string, options: Parameters<typeof call>[3] = {}) =>
    call(api.url, method, path, { ...options, headers: { ...options.headers, 'x-forwarded-for': address } });
  const badKey = (i: number) => `pk_test_${(0xabc000000000 + i).toString(16)}_${'0'.repeat(64)}`;

  it('an address over its failed-auth budget gets 429 with Retry-After, whatever key it then sends; others are not affected', async () => {
    const address = '198.51.100.7';
    for (let i = 0; i < LIMIT; i++) {
      const res = await from(address, 'get', '/v1/keys', { key: badKey(i) });
      expect(res.status, `attempt ${i + 1}`).toBe(401);
    }
    const over = await from(address, 'get', '/v1/keys', { key: badKey(99) });
    expect(over.status).toBe(429);
    expect(over.headers.get('content-type')).toContain('application/problem+json');
    const retry = Number(over.headers.get('retry-after'));
    expect(retry >= 1 && retry <= 60).toBe(true);
    expect(over.body.detail).toMatch(/^Too many failed authentications from this address \(limit 20\/1m\); retry in \d+ s\.$/);
    // The address is refused before its key is looked at, so a good key waits out the window too.
    expect((await from(address, 'get', '/v1/keys', { key: admin })).status).toBe(429);
    expect((await from('198.51.100.8', 'get', '/v1/keys', { key: admin })).status).toBe(200);
  });

  it('wrong webhook signatures spend the same budget', async () => {
    const address = '198.51.100.9';
    const headers = { 'x-hubspot-signature-v3': 'AAAA', 'x-hubspot-request-timestamp': String(Date.now()) };
    for (let i = 0; i < LIMIT; i++) expect((await from(address, 'post', '/v1/webhooks/hubspot', { body: { submissionId: `s${i}` }, headers })).status).toBe(401);
    // The webhook checks its own signature: its 401 is counted once answered.
    await new Promise((r) => setTimeout(r, 200));
    const over = await from(address, 'post', '/v1/webhooks/hubspot', { body: { submissionId: 'over' }, headers });
    expect(over.status).toBe(429);
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  });

  it('refused attempts are counted in the auth audit, not written one row each', async () => {
    const address = '198.51.100.10';
    const routes = ['/v1/keys', '/v1/approvers', '/v1/prospects/prospect-x%40flood.example'];
    const rowsOf = async () =>
      (await db.pool.query(`SELECT decision, status, attempts FROM api_auth_audit WHERE client_ip = $1`, [address])).rows as { decision: string; status: number; attempts: number }[];
    const flood = async (n: number) => {
      let refused = 0;
      for (let i = 0; i < n; i++) {
        const res = await from(address, 'get', routes[i % routes.length]!, { key: badKey(i) });
        if (res.status === 429) refused++;
        else expect(res.status).toBe(401);
      }
      await api.security.audit.flush({ summaries: true });
      return refused;
    };
    const refusedFirst = await flood(300);
    expect(refusedFirst).toBe(300 - LIMIT);
    const first = await rowsOf();
    expect(first.filter((r) => r.decision === 'deny_unauthenticated')).toHaveLength(LIMIT);
    const limited = first.filter((r) => r.decision === 'deny_rate');
    // One row when an address is first refused on a route, then one count per route per period.
    expect(limited.length).toBeLessThanOrEqual(2 * routes.length);
    expect(limited.every((r) => r.status === 429)).toBe(true);
    expect(limited.reduce((n, r) => n + r.attempts, 0)).toBe(refusedFirst);

    const refusedAgain = await flood(600);
    const again = await rowsOf();
    expect(again.length - first.length).toBeLessThanOrEqual(2 * routes.length);
    expect(again.filter((r) => r.decision === 'deny_rate').reduce((n, r) => n + r.attempts, 0)).toBe(refusedFirst + refusedAgain);
  });

  it('/metrics keeps its size and shows no address after 10,000 bad requests; logs carry no path', async () => {
    const random = seededRandom(20260101);
    const word = () => random().toString(36).slice(2, 8);
    const email = () => `${word()}.${word()}@flood-${word()}.example`;
    const keyedPaths = ['/v1/keys', '/v1/approvers', '/v1/signals', '/v1/prospects'];
    /** One bad request: unknown paths with addresses, bad keys, keys in the query, wrong methods, broken and too deep bodies. */
    const badRequest = (): [string, string, Parameters<typeof call>[3]] => {
      const method = ['get', 'post', 'put', 'patch', 'delete'][Math.floor(random() * 5)]!;
      switch (Math.floor(random() * 8)) {
        case 0: return [method, `/v1/people/${encodeURIComponent(email())}/${word()}`, {}];
        case 1: return [method, `/${encodeURIComponent(email())}`, {}];
        case 2: return ['get', `/v1/prospects/${encodeURIComponent(`prospect-${email()}`)}`, { key: badKey(Math.floor(random() * 1e6)) }];
        case 3: return ['post', `/v1/prospects/${encodeURIComponent(`prospect-${email()}`)}/approve`, { body: { version: 1 } }];
        case 4: return ['get', `/v1/keys?api_key=${badKey(Math.floor(random() * 1e6))}&email=${encodeURIComponent(email())}`, { key: 'letmein' }];
        case 5: return [['delete', 'put', 'patch'][Math.floor(random() * 3)]!, keyedPaths[Math.floor(random() * keyedPaths.length)]!, { key: badKey(7) }];
        case 6: return ['post', `/v1/${encodeURIComponent(email())}`, { rawBody: `{"email": "${email()}", ` }];
        default: return ['post', `/v1/webhooks/${encodeURIComponent(email())}`, { rawBody: `${'['.repeat(200)}${']'.repeat(200)}` }];
      }
    };
    const send = async (n: number) => {
      const statuses = new Map<number, number>();
      let next = 0;
      const lane = async () => {
        while (next < n) {
          next++;
          const [method, path, options] = badRequest();
          const res = await from('203.0.113.50', method, path, options);
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        }
      };
      await Promise.all(Array.from({ length: 16 }, lane));
      return statuses;
    };
    const metrics = async () => (await call(api.url, 'get', '/metrics')).text;
    // The runtime's own series (prefixed like ours) gain a GC kind or heap space when the process first sees one.
    const shapeOf = (text: string) => text.split('\n').filter((l) => !/^(# (HELP|TYPE) )?[a-z_]*(nodejs_|process_)/.test(l)).map((l) => l.replace(/ [^ ]+$/, ''));
    const seriesOf = (text: string) => new Set(text.split('\n').filter((l) => l.startsWith('prospector_http_request_duration_seconds_count')).map((l) => l.replace(/ [^ ]+$/, '')));

    // Every kind of bad request once over (and a scrape), so each series exists before the measurement.
    await metrics();
    await call(api.url, 'get', '/openapi.json');
    await call(api.url, 'get', '/docs/swagger-ui.css');
    const warmup = await send(2_000);
    const before = await metrics();
    const statuses = await send(10_000);
    const after = await metrics();

    // The address spent its failed-auth budget early in the first round: its 401s became 429s.
    expect([...warmup.keys(), ...statuses.keys()]).toEqual(expect.arrayContaining([400, 401, 404, 429]));
    expect([...statuses.values()].reduce((a, b) => a + b, 0)).toBe(10_000);
    expect(seriesOf(after)).toEqual(seriesOf(before));
    // Every series of ours is the same (only values move); the runtime's own (GC kinds, heap spaces) may add one now and then.
    expect(shapeOf(after)).toEqual(shapeOf(before));
    expect(Math.abs(after.length - before.length)).toBeLessThan(2_000);
    expect(after).not.toMatch(/@|flood-|pk_test_/);
    const routes = new Set([...after.matchAll(/route="([^"]*)"/g)].map((m) => m[1]));
    const templates = new Set(['unmatched', '/metrics', '/openapi.json', '/docs', ...api.routes.map((r) => `/v1${r.path}`)]);
    expect([...routes].filter((r) => !templates.has(r!))).toEqual([]);
    expect(routes).toContain('unmatched');
    expect(routes).toContain('/v1/prospects/:id');
    expect(routes).toContain('/docs');
    console.log(`/metrics: ${before.length} bytes before, ${after.length} after 10,000 bad requests; statuses ${JSON.stringify(Object.fromEntries(statuses))}`);

    const text = logs.text();
    expect(text).toContain('"route":"unmatched"');
    expect(text).not.toMatch(/flood-|%40/);
  }, 120_000);

  it('prunes auth audit rows past AUTH_AUDIT_RETENTION and expired webhook receipts on its own', async () => {
    const day = 86_400_000;
    const row = (ageMs: number, requestId: string): AuthAuditRow => ({
      at: new Date(Date.now() - ageMs), keyId: null, keyPrefix: null, route: 'GET /v1/keys', operationId: 'listApiKeys', method: 'GET',
      requestId, traceId: null, decision: 'deny_unauthenticated', status: 401, scope: 'admin', clientIp: '192.0.2.1',
    });
    await insertAuthAudit(db.pool, [row(40 * day, 'retention-old-1'), row(31 * day, 'retention-old-2'), row(29 * day, 'retention-kept')]);
    await claimReceipt(db.pool, 'hubspot', 'submission:retention-expired', 'accepted', {}, 1);
    await claimReceipt(db.pool, 'hubspot', 'submission:retention-kept', 'accepted', {}, day);
    const left = async () => ({
      audit: (await db.pool.query(`SELECT request_id FROM api_auth_audit WHERE request_id LIKE 'retention-%' ORDER BY 1`)).rows.map((r) => r.request_id),
      receipts: (await db.pool.query(`SELECT receipt_key FROM webhook_receipts WHERE receipt_key LIKE 'submission:retention-%' ORDER BY 1`)).rows.map((r) => r.receipt_key),
    });
    // No call here: the security layer's timer (every 300 ms in this test) does it.
    await expect.poll(left, { timeout: 10_000, interval: 100 }).toEqual({ audit: ['retention-kept'], receipts: ['submission:retention-kept'] });
  });

  it('every response seen matched the OpenAPI document', () => {
    expect(api.violations).toEqual([]);
  });
});

