import { mkdtempSync, chmodSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import getPort from 'get-port';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { createApp } from '../../api/app.js';
import { loadConfig } from '../../lib/config/config.js';
import { createPool, migrate, type Pool } from '../../lib/store/db.js';
import { createLogger } from '../../lib/config/logger.js';
import { startEmbeddedPostgres, type EmbeddedDb } from '../../infra/postgres-dev.js';
import { testTemporal } from '../helpers/stack.js';

async function listen(app: ReturnType<typeof createApp>): Promise<{ server: Server; url: string }> {
  return new Promise((resolve) => {
    const server = app.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}` }));
  });
}

describe('health and readiness', () => {
  let pg: EmbeddedDb;
  let pool: Pool;
  let dir: string;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let api: { server: Server; url: string };
  let deadTemporalApi: { server: Server; url: string };
  let deadConnection: Connection;

  beforeAll(async () => {
    // A PostgreSQL of this test's own, because the test stops and starts it.
    dir = mkdtempSync(path.join(os.tmpdir(), 'readyz-'));
    chmodSync(dir, 0o755);
    // Not ephemeral: an ephemeral cluster deletes its data on stop, and this test starts it again.
    pg = await startEmbeddedPostgres({ dataDir: path.join(dir, 'pg'), port: await getPort() });
    await migrate(pg.url);
    pool = createPool(pg.url, 2);
    temporal = await testTemporal();
    const config = await loadConfig({ env: {}, overrides: { API_BODY_LIMIT: '1kb' } });
    const log = createLogger({ name: 'test', level: 'silent' });
    api = await listen(createApp({ config, pool, temporal: temporal.client, log }));
    deadConnection = Connection.lazy({ address: `127.0.0.1:${await getPort()}`, connectTimeout: '500ms' });
    deadTemporalApi = await listen(createApp({ config, pool, temporal: new Client({ connection: deadConnection }), log }));
  });

  afterAll(async () => {
    api?.server.close();
    deadTemporalApi?.server.close();
    await pool?.end();
    await deadConnection?.close().catch(() => undefined);
    await temporal?.close();
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('/healthz answers 200 without touching dependencies', async () => {
    const res = await fetch(`${api.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('/readyz goes 503 naming PostgreSQL when it stops, and back to 200 when it returns, without restarting the API', async () => {
    const ready = await fetch(`${api.url}/readyz`);
    expect(ready.status).toBe(200);

    await pg.stop();
    const down = await fetch(`${api.url}/readyz`);
    expect(down.status).toBe(503);
    expect(down.headers.get('content-type')).toContain('application/problem+json');
    const body = (await down.json()) as { detail: string; down: string[]; checks: Record<string, { ok: boolean }> };
    expect(body.down).toEqual(['postgres']);
    expect(body.detail).toContain('PostgreSQL');
    expect(body.checks.temporal!.ok).toBe(true);

    await pg.start();
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      status = (await fetch(`${api.url}/readyz`)).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(200);
  });

  it('/readyz names Temporal when it cannot be reached', async () => {
    const res = await fetch(`${deadTemporalApi.url}/readyz`);
    expect(res.status).toBe(503);
    const body = (await res.json()) as { detail: string; down: string[] };
    expect(body.down).toEqual(['temporal']);
    expect(body.detail).toContain('Temporal');
  });

  it('answers unknown routes, malformed JSON and oversized bodies with problem+json', async () => {
    const missing = await fetch(`${api.url}/v1/nothing-here`);
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toContain('application/problem+json');
    expect(((await missing.json()) as { detail: string }).detail).toContain('GET /v1/nothing-here');

    const malformed = await fetch(`${api.url}/v1/nothing-here`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":' });
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { title: string }).title).toBe('Malformed JSON');

    const big = await fetch(`${api.url}/v1/nothing-here`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ a: 'x'.repeat(5_000) }) });
    expect(big.status).toBe(413);
  });

  it('sends security headers and no framework fingerprint', async () => {
    const res = await fetch(`${api.url}/healthz`);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('x-powered-by')).toBeNull();
    expect(res.headers.get('x-request-id')).toBeTruthy();
  });
});
