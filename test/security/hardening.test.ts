import type { Server } from 'node:http';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createApp } from '../../api/app.js';
import type { ApiDeps } from '../../api/deps.js';
import { defineRoute } from '../../api/route.js';
import { createSecurity } from '../../api/security/index.js';
import type { ContractViolation } from '../../api/security/contract.js';
import { KEY_PATTERN } from '../../lib/store/api-keys.js';
import { loadConfig } from '../../lib/config/config.js';
import { createLogger } from '../../lib/config/logger.js';
import { loadSecurityConfig } from '../../lib/config/security.js';
import { testDatabase, testTemporal } from '../helpers/stack.js';
import { call, LogCapture, samplePath, startTestApi, type TestApi } from './helpers.js';

describe('hardening, OpenAPI and secrets', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let api: TestApi;
  const logs = new LogCapture();
  /** Every plaintext key this file made; none may end up in the database or the logs. */
  const plaintexts: string[] = [];
  let admin: string;

  beforeAll(async () => {
    db = await testDatabase();
    temporal = await testTemporal();
    api = await startTestApi({
      databaseUrl: db.url,
      temporal: temporal.client,
      logs,
      settings: { API_BODY_LIMIT: '2kb', CORS_ORIGINS: 'https://app.example,https://admin.example', LOG_LEVEL: 'trace' },
    });
    admin = (await api.security.store.create({ name: 'hardening admin', scopes: ['admin'], actor: 'test' })).plaintext;
    plaintexts.push(admin);
  });
  afterAll(async () => {
    await api?.close();
    await temporal?.close();
    await db?.drop();
  });

  it('oversized bodies get 413 and malformed JSON 400, as problem+json, with or without a key', async () => {
    for (const key of [admin, undefined]) {
      const big = await call(api.url, 'post', '/v1/keys', { key, rawBody: JSON.stringify({ name: 'x'.repeat(5_000), scopes: ['admin'] }) });
      expect(big.status).toBe(413);
      expect(big.headers.get('content-type')).toContain('application/problem+json');
      expect(big.body).toMatchObject({ status: 413, title: 'Payload too large' });
      const bad = await call(api.url, 'post', '/v1/keys', { key, rawBody: '{"name": "x", "scopes": [' });
      expect(bad.status).toBe(400);
      expect(bad.body).toMatchObject({ status: 400, title: 'Malformed JSON' });
      expect(bad.text).not.toMatch(/at .*\.(ts|js):\d+/);
    }
    const wrongCharset = await call(api.url, 'post', '/v1/keys', { key: admin, rawBody: '{}', headers: { 'content-type': 'application/json; charset=koi8-r' } });
    expect(wrongCharset.status).toBe(415);
    // Not JSON at all: the body is absent, so validation names it.
    const text = await call(api.url, 'post', '/v1/keys', { key: admin, rawBody: 'name=x', headers: { 'content-type': 'text/plain' } });
    expect(text.status).toBe(400);
    expect(text.body.detail).toMatch(/^body/);
    const invalid = await call(api.url, 'post', '/v1/keys', { key: admin, body: { name: 'x', scopes: ['root'] } });
    expect(invalid.status).toBe(400);
    expect(invalid.body.errors[0].field).toBe('body.scopes.0');
  });

  it('sends helmet headers on API answers', async () => {
    const res = await call(api.url, 'get', '/v1/keys', { key: admin });
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(res.headers.get('strict-transport-security')).toBeTruthy();
    expect(res.headers.get('x-powered-by')).toBeNull();
  });

  it('CORS: allow-listed origins only, with the auth headers allowed and the rate-limit headers exposed', async () => {
    const preflight = await fetch(`${api.url}/v1/keys`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect(preflight.headers.get('access-control-allow-headers')).toContain('authorization');
    expect(preflight.headers.get('access-control-allow-credentials')).toBeNull();

    const foreign = await fetch(`${api.url}/v1/keys`, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
    expect(foreign.headers.get('access-control-allow-origin')).toBeNull();

    const real = await call(api.url, 'get', '/v1/keys', { key: admin, headers: { origin: 'https://admin.example' } });
    expect(real.headers.get('access-control-allow-origin')).toBe('https://admin.example');
    expect(real.headers.get('access-control-expose-headers')).toContain('ratelimit-remaining');
    const other = await call(api.url, 'get', '/v1/keys', { key: admin, headers: { origin: 'https://evil.example' } });
    expect(other.status).toBe(200);
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('/openapi.json is OpenAPI 3.1 and describes every registered route with its scope and schemas', async () => {
    const res = await call(api.url, 'get', '/openapi.json');
    expect(res.status).toBe(200);
    const doc = res.body;
    expect(doc.openapi).toBe('3.1.0');
    const ajv = new Ajv2020({ strict: false, logger: false });
    (addFormats as unknown as (a: Ajv2020) => void)(ajv);
    for (const route of api.routes) {
      const path = `/v1${route.path.replace(/:(\w+)/g, '{$1}')}`;
      const op = doc.paths[path]?.[route.method];
      expect(op, `${route.method.toUpperCase()} ${path}`).toBeDefined();
      expect(op.operationId).toBe(route.operationId);
      if (typeof route.auth === 'object') {
        expect(op['x-required-scope']).toBe(route.auth.scope);
        expect(op.security).toEqual([{ bearerAuth: [route.auth.scope] }, { apiKeyHeader: [route.auth.scope] }]);
        for (const status of ['401', '403', '429']) expect(op.responses[status]).toBeDefined();
      } else {
        expect(op.security).toEqual([]);
      }
      for (const status of Object.keys(route.responses)) expect(op.responses[status], `${route.operationId} ${status}`).toBeDefined();
      for (const p of route.path.match(/:(\w+)/g) ?? []) {
        expect(op.parameters.some((x: { name: string; in: string }) => x.name === p.slice(1) && x.in === 'path')).toBe(true);
      }
      if (route.body) expect(op.requestBody.content['application/json'].schema).toBeDefined();
    }
    const operations = Object.values(doc.paths as Record<string, Record<string, unknown>>).flatMap((p) => Object.keys(p));
    expect(operations).toHaveLength(api.routes.length);
    // Every schema in the document is valid JSON Schema 2020-12 with its references resolvable.
    ajv.addSchema({ ...doc, $id: 'https://x/openapi.json' });
    for (const name of Object.keys(doc.components.schemas)) expect(() => ajv.compile({ $ref: `https://x/openapi.json#/components/schemas/${name}` })).not.toThrow();
  });

  it('/docs is a self-contained Swagger UI page (no CDN) that loads the document', async () => {
    const redirect = await fetch(`${api.url}/docs`, { redirect: 'manual' });
    expect(redirect.status).toBe(301);
    expect(redirect.headers.get('location')).toBe('/docs/');
    const page = await fetch(`${api.url}/docs/`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('swagger-ui');
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
    for (const asset of ['swagger-ui-bundle.js', 'swagger-ui.css', 'init.js']) {
      const res = await fetch(`${api.url}/docs/${asset}`);
      expect(res.status, asset).toBe(200);
      expect((await res.text()).length).toBeGreaterThan(100);
    }
    const init = await (await fetch(`${api.url}/docs/init.js`)).text();
    expect(init).toContain('../openapi.json');
    expect(init).toContain('validatorUrl: null');
  });

  it('the response contract check catches undeclared statuses and wrong bodies; internal errors carry no stack', async () => {
    const config = await loadConfig({ env: {}, overrides: { DATABASE_URL: db.url } });
    const log = createLogger({ name: 'contract', level: 'silent' });
    const deps: ApiDeps = { config, pool: db.pool, temporal: temporal.client, log };
    const routes = [
      defineRoute({ method: 'get', path: '/probe/wrong-body', operationId: 'wrongBody', summary: 'x', tags: ['probe'], auth: 'public', responses: { 200: { description: 'ok', schema: z.object({ ok: z.boolean() }) } }, handler: () => ({ body: { ok: 'yes' } }) }),
      defineRoute({ method: 'get', path: '/probe/undeclared', operationId: 'undeclared', summary: 'x', tags: ['probe'], auth: 'public', responses: { 200: { description: 'ok' } }, handler: () => ({ status: 202, body: { queued: true } }) }),
      defineRoute({ method: 'get', path: '/probe/right', operationId: 'right', summary: 'x', tags: ['probe'], auth: 'public', responses: { 200: { description: 'ok', schema: z.object({ ok: z.boolean() }) } }, handler: () => ({ body: { ok: true } }) }),
      defineRoute({ method: 'get', path: '/probe/boom', operationId: 'boom', summary: 'x', tags: ['probe'], auth: 'public', responses: { 200: { description: 'ok' } }, handler: () => { throw new Error(`db password=${admin}`); } }),
    ];
    const violations: ContractViolation[] = [];
    const security = await createSecurity(deps, { routes, settings: await loadSecurityConfig({ env: {} }), onContractViolation: (v) => violations.push(v) });
    const app = createApp({ ...deps, routes, routeMiddleware: security.middleware, extras: security.extras });
    const server = await new Promise<Server>((r) => {
      const s = app.listen(0, '127.0.0.1', () => r(s));
    });
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    // The check runs on each response's 'finish', which can come after the client has the answer.
    // Listeners of one 'finish' run together, so once ours has counted a response, the check has judged it.
    let finished = 0;
    server.on('request', (_req, res) => res.once('finish', () => finished++));
    try {
      await call(url, 'get', '/v1/probe/wrong-body');
      await call(url, 'get', '/v1/probe/undeclared');
      await call(url, 'get', '/v1/probe/right');
      const boom = await call(url, 'get', '/v1/probe/boom');
      expect(boom.status).toBe(500);
      expect(boom.text).not.toContain(admin);
      expect(boom.text).not.toMatch(/Error:|at .*:\d+:\d+/);
      expect(boom.body.detail).toBe('The server failed to handle this request; it has been logged.');
      await expect.poll(() => finished).toBe(4);
      expect(violations.map((v) => v.operationId).sort()).toEqual(['undeclared', 'wrongBody']);
      expect(violations.find((v) => v.operationId === 'wrongBody')!.problem).toContain('/ok must be boolean');
      expect(violations.find((v) => v.operationId === 'undeclared')!.problem).toContain('status 202 is not declared');
    } finally {
      server.close();
      await security.close();
    }
  });

  it('no plaintext key reaches the database or the logs', async () => {
    // Keys made through the admin API, rotated, revoked, and used every way a client might.
    const created = await call(api.url, 'post', '/v1/keys', { key: admin, body: { name: 'integrator', scopes: ['prospects:read'], expiresIn: '30d' } });
    expect(created.status).toBe(201);
    plaintexts.push(created.body.key);
    const rotated = await call(api.url, 'post', `/v1/keys/${created.body.id}/rotate`, { key: admin, body: { overlap: '1h' } });
    expect(rotated.status).toBe(201);
    plaintexts.push(rotated.body.key.key);
    for (const key of plaintexts) {
      await call(api.url, 'get', '/v1/keys', { key });
      await call(api.url, 'get', '/v1/keys', { key, header: 'x-api-key' });
      await call(api.url, 'get', `/v1/keys?api_key=${key}`, { key });
      await call(api.url, 'get', '/v1/nothing-here', { key });
      await call(api.url, 'post', '/v1/keys', { key, rawBody: `{"name": "${key}"` });
      await call(api.url, 'post', '/v1/keys', { key, body: { name: key, scopes: ['nope'] } });
      const tampered = key.slice(0, -4) + 'ffff';
      await call(api.url, 'get', '/v1/keys', { key: tampered });
    }
    await call(api.url, 'post', `/v1/keys/${rotated.body.key.id}/revoke`, { key: admin, body: { reason: 'test' } });
    for (const route of api.routes) await call(api.url, route.method, samplePath(route), { key: plaintexts[2], body: {} });
    await api.security.audit.flush();
    expect(plaintexts.every((k) => KEY_PATTERN.test(k))).toBe(true);

    const secrets = plaintexts.flatMap((k) => [k, KEY_PATTERN.exec(k)![3]!]);
    const columns = await db.pool.query(`
      SELECT table_name, column_name FROM information_schema.columns
      WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'ARRAY', 'bytea', 'USER-DEFINED')`);
    expect(columns.rows.length).toBeGreaterThan(10);
    const hits: string[] = [];
    for (const { table_name, column_name } of columns.rows) {
      const res = await db.pool.query(
        `SELECT count(*)::int AS n FROM "${table_name}" WHERE "${column_name}"::text LIKE ANY($1::text[])`,
        [secrets.map((s) => `%${s}%`)],
      );
      if (res.rows[0].n > 0) hits.push(`${table_name}.${column_name}`);
    }
    expect(hits).toEqual([]);
    // The audit trail is there, so the check above had rows to look at.
    expect(Number((await db.pool.query('SELECT count(*) FROM api_auth_audit')).rows[0].count)).toBeGreaterThan(20);

    const text = logs.text();
    expect(text.length).toBeGreaterThan(1_000);
    for (const secret of secrets) expect(text.includes(secret), 'a key in the logs').toBe(false);
  });

  it('every response seen matched the OpenAPI document', () => {
    expect(api.violations).toEqual([]);
  });
});
