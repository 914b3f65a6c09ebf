import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from '../../api/server.js';
import { ApiKeyStore } from '../../lib/store/api-keys.js';
import { loadConfig } from '../../lib/config/config.js';
import { createPool } from '../../lib/store/db.js';
import { createLogger } from '../../lib/config/logger.js';
import { testDatabase, testTemporal } from '../helpers/stack.js';
import { call, startRedis, startTestApi, type RedisServer, type TestApi } from './helpers.js';

/** Two API replicas on one database: what one revokes or counts, the other sees. */
describe('API replicas', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;

  beforeAll(async () => {
    db = await testDatabase();
    temporal = await testTemporal();
  });
  afterAll(async () => {
    await temporal?.close();
    await db?.drop();
  });

  it('a key revoked through one replica (buildApi) is rejected by another within 1 s', async () => {
    const config = await loadConfig({ env: {}, overrides: { DATABASE_URL: db.url } });
    const log = createLogger({ name: 'replica', level: 'silent' });
    const replicas = await Promise.all(
      [1, 2].map(async () => {
        const pool = createPool(db.url, 3);
        const api = await buildApi({ config, pool, temporal: temporal.client, log });
        const server = await new Promise<Server>((r) => {
          const s = api.app.listen(0, '127.0.0.1', () => r(s));
        });
        return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server, pool, close: api.close };
      }),
    );
    const [a, b] = replicas as [(typeof replicas)[0], (typeof replicas)[0]];
    try {
      // The first admin key comes straight from the database, as `prospector keys create` makes it.
      const bootstrap = await (await ApiKeyStore.fromEnv(db.pool, { PROSPECTOR_ENV: config.env })).create({ name: 'bootstrap', scopes: ['admin'], actor: 'test' });
      const created = await call(a.url, 'post', '/v1/keys', { key: bootstrap.plaintext, body: { name: 'to revoke', scopes: ['admin'] } });
      expect(created.status).toBe(201);
      expect(created.headers.get('cache-control')).toBe('no-store');
      const victim = created.body as { id: string; key: string };

      // Replica B has the key cached and accepts it.
      expect((await call(b.url, 'get', '/v1/keys', { key: victim.key })).status).toBe(200);
      expect((await call(b.url, 'get', '/v1/keys', { key: victim.key })).status).toBe(200);

      const revoked = await call(a.url, 'post', `/v1/keys/${victim.id}/revoke`, { key: bootstrap.plaintext, body: { reason: 'test' } });
      expect(revoked.status).toBe(200);
      const t0 = performance.now();
      // The replica that revoked forgets the key at once.
      expect((await call(a.url, 'get', '/v1/keys', { key: victim.key })).status).toBe(401);

      let status = 200;
      let elapsed = 0;
      while (status !== 401 && elapsed < 3_000) {
        const res = await call(b.url, 'get', '/v1/keys', { key: victim.key });
        status = res.status;
        elapsed = performance.now() - t0;
        if (status === 401) expect(res.body.detail).toContain('revoked');
        else await new Promise((r) => setTimeout(r, 20));
      }
      console.log(`revoke seen by the second replica after ${Math.round(elapsed)} ms`);
      expect(status).toBe(401);
      expect(elapsed).toBeLessThan(1_000);
    } finally {
      for (const r of replicas) {
        r.server.closeAllConnections();
        r.server.close();
        await r.close();
        await r.pool.end();
      }
    }
  });

  it('audit rows are written off the request path and none is lost on shutdown', async () => {
    // A long flush interval: rows wait in memory until the batch goes or the replica stops.
    const api = await startTestApi({ databaseUrl: db.url, temporal: temporal.client, settings: { AUDIT_FLUSH_INTERVAL: '10s' } });
    let closed = false;
    try {
      const { plaintext: key } = await api.security.store.create({ name: 'shutdown', scopes: ['signals:read'], actor: 'test' });
      const ids = Array.from({ length: 25 }, (_, i) => `shutdown-${process.pid}-${i}`);
      for (const [i, id] of ids.entries()) {
        await call(api.url, 'get', '/v1/keys', { key: i % 2 ? key : undefined, headers: { 'x-request-id': id } });
      }
      const count = async () => Number((await db.pool.query('SELECT count(*) FROM api_auth_audit WHERE request_id = ANY($1)', [ids])).rows[0].count);
      expect(await count()).toBe(0);
      expect(api.security.audit.pending).toBe(25);
      await api.close();
      closed = true;
      expect(await count()).toBe(25);
      const decisions = await db.pool.query('SELECT decision, count(*)::int AS n FROM api_auth_audit WHERE request_id = ANY($1) GROUP BY 1 ORDER BY 1', [ids]);
      expect(decisions.rows).toEqual([
        { decision: 'deny_scope', n: 12 },
        { decision: 'deny_unauthenticated', n: 13 },
      ]);
    } finally {
      if (!closed) await api.close();
    }
  });

  for (const backend of ['postgres', 'redis'] as const) {
    describe(`one rate-limit budget shared by two replicas (${backend})`, () => {
      let redis: RedisServer | undefined;
      let apis: TestApi[] = [];

      beforeAll(async () => {
        if (backend === 'redis') redis = await startRedis();
        const settings: Record<string, string> = { RATE_LIMIT_ROUTES: '{"listApiKeys":"5/1m"}', RATE_LIMIT_KEY: 'off' };
        if (redis) settings.REDIS_URL = redis.url;
        apis = [await startTestApi({ databaseUrl: db.url, temporal: temporal.client, settings }), await startTestApi({ databaseUrl: db.url, temporal: temporal.client, settings })];
      });
      afterAll(async () => {
        for (const api of apis) await api.close();
        await redis?.stop();
      });

      it('alternating calls on both replicas spend one budget', async () => {
        expect(apis[0]!.security.limits.backend).toBe(backend);
        const { plaintext: key } = await apis[0]!.security.store.create({ name: `shared ${backend}`, scopes: ['admin'], actor: 'test' });
        const results: { status: number; remaining: string | null }[] = [];
        for (let i = 0; i < 8; i++) {
          const res = await call(apis[i % 2]!.url, 'get', '/v1/keys', { key });
          results.push({ status: res.status, remaining: res.headers.get('ratelimit-remaining') });
        }
        expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 429, 429, 429]);
        expect(results.slice(0, 5).map((r) => r.remaining)).toEqual(['4', '3', '2', '1', '0']);
        const pgCounters = Number((await db.pool.query(`SELECT count(*) FROM api_rate_limits WHERE key LIKE 'rl:route:%' || $1`, [key.split('_')[2]])).rows[0].count);
        expect(pgCounters).toBe(backend === 'postgres' ? 1 : 0);
      });

      if (backend === 'redis') {
        it('readiness reports Redis, and requests still succeed (per-process limits) while Redis is down', async () => {
          const ready = await call(apis[0]!.url, 'get', '/readyz');
          expect(ready.body.checks.redis).toMatchObject({ ok: true, label: 'Redis' });
          await redis!.stop();
          const down = await call(apis[0]!.url, 'get', '/readyz');
          expect(down.status).toBe(503);
          expect(down.body.down).toEqual(['redis']);
          const { plaintext: key } = await apis[0]!.security.store.create({ name: 'during outage', scopes: ['admin'], actor: 'test' });
          const res = await call(apis[0]!.url, 'get', '/v1/keys', { key });
          expect(res.status).toBe(200);
          expect(res.headers.get('ratelimit-limit')).toBe('5');
        });
      }
    });
  }
});
