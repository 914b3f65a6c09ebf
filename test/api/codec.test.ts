import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../../lib/config/config.js';
import { ENCRYPTED_ENCODING, KEY_ID_METADATA, payloadToJson, type JsonPayload } from '../../lib/config/payload-codec.js';
import { ApiKeyStore } from '../../lib/store/api-keys.js';
import { loadSecurityConfig } from '../../lib/config/security.js';
import { startProspectsApi, type ProspectsApi } from './prospects-api.js';
import { TEST_FIXTURE_PAYLOAD_KEY_B, TEST_PAYLOAD_KEYS, testPayloadCodec } from '../helpers/payload-keys.js';
import { testDatabase, testTemporal, uniqueTaskQueue } from '../helpers/stack.js';

/**
 * The codec endpoint (api/routes/codec.ts) as the Temporal UI and CLI use it:
 * authenticated (payloads:decode), CORS for the UI's origin only, the
 * browser's sign-in cookie, and decode/encode in the codec-server protocol.
 */

const UI = 'http://127.0.0.1:8233';
const b64 = (s: string) => Buffer.from(s).toString('base64');
const plainJson = (value: unknown): JsonPayload => ({ metadata: { encoding: b64('json/plain') }, data: b64(JSON.stringify(value)) });

describe('codec endpoint', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let api: ProspectsApi;
  let config: Config;
  let reader: string;
  let store: ApiKeyStore;

  beforeAll(async () => {
    [db, temporal] = await Promise.all([testDatabase(), testTemporal()]);
    config = await loadConfig({ env: {}, overrides: { PAYLOAD_KEYS: TEST_PAYLOAD_KEYS, TEMPORAL_UI_URL: UI, PAYLOAD_CODEC_SESSION_TTL: '2h' } });
    api = await startProspectsApi({ config, pool: db.pool, temporal: temporal.client, taskQueue: uniqueTaskQueue('codec'), dispatcher: false });
    reader = await api.key(['payloads:decode'], 'ana@prospector.example');
    store = ApiKeyStore.fromSecurity(db.pool, await loadSecurityConfig({ env: {}, overrides: { PROSPECTOR_ENV: config.env } }));
  });

  afterAll(async () => {
    expect(api?.violations ?? []).toEqual([]);
    await api?.close();
    await temporal?.close();
    await db?.drop();
  });

  const post = (route: string, init: { body?: unknown; headers?: Record<string, string> } = {}) =>
    fetch(`${api.url}/v1/codec/${route}`, { method: 'POST', headers: { 'content-type': 'application/json', ...init.headers }, body: JSON.stringify(init.body ?? { payloads: [] }) });

  it('refuses callers without a key (401) or without the scope (403)', async () => {
    const none = await post('decode');
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="prospector"');
    expect(none.headers.get('content-type')).toContain('application/problem+json');
    const readOnly = await api.key(['prospects:read', 'signals:read']);
    const wrongScope = await post('decode', { headers: { authorization: `Bearer ${readOnly}` } });
    expect(wrongScope.status).toBe(403);
    expect(wrongScope.headers.get('www-authenticate')).toContain('scope="payloads:decode"');
    expect((await post('encode', { headers: { authorization: `Bearer ${readOnly}` } })).status).toBe(403);
  });

  it('decodes what the workers encrypt, passes plain payloads through, encodes with the current key', async () => {
    const secret = { lead: { notes: 'Budget approved for Q3' } };
    const [sealed] = await testPayloadCodec().encode([{ metadata: { encoding: Buffer.from('json/plain') }, data: Buffer.from(JSON.stringify(secret)) }]);
    const auth = { authorization: `Bearer ${reader}` };
    const decoded = await post('decode', { headers: auth, body: { payloads: [payloadToJson(sealed!), plainJson('as is')] } });
    expect(decoded.status).toBe(200);
    const { payloads } = (await decoded.json()) as { payloads: JsonPayload[] };
    expect(payloads).toEqual([plainJson(secret), plainJson('as is')]);

    const encoded = await post('encode', { headers: auth, body: { payloads: [plainJson({ version: 1 })] } });
    expect(encoded.status).toBe(200);
    const [enc] = ((await encoded.json()) as { payloads: JsonPayload[] }).payloads;
    expect(Buffer.from(enc!.metadata!.encoding!, 'base64').toString()).toBe(ENCRYPTED_ENCODING);
    expect(Buffer.from(enc!.metadata![KEY_ID_METADATA]!, 'base64').toString()).toBe('test-fixture-a');
    const [back] = await testPayloadCodec().decode([{ metadata: { encoding: Buffer.from(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: Buffer.from('test-fixture-a') }, data: Buffer.from(enc!.data!, 'base64') }]);
    expect(Buffer.from(back!.data!).toString()).toBe('{"version":1}');

    // A payload under a key this deployment lacks: 422 naming the key id.
    const [foreign] = await testPayloadCodec(TEST_FIXTURE_PAYLOAD_KEY_B).encode([{ metadata: { encoding: Buffer.from('json/plain') }, data: Buffer.from('1') }]);
    const unknownKey = await post('decode', { headers: auth, body: { payloads: [payloadToJson(foreign!)] } });
    expect(unknownKey.status).toBe(422);
    expect(((await unknownKey.json()) as { detail: string }).detail).toMatch(/key "test-fixture-b", which PAYLOAD_KEYS does not hold/);
    expect((await post('decode', { headers: auth, body: { payloads: [{ data: 'not base64!' }] } })).status).toBe(400);

    // Bodies of whole payloads: larger than API_BODY_LIMIT (100kb) is fine here.
    const big = await post('decode', { headers: auth, body: { payloads: [plainJson('x'.repeat(600_000))] } });
    expect(big.status).toBe(200);
  });

  it('answers the CORS preflight for the Temporal UI origin only', async () => {
    const preflight = (origin: string) =>
      fetch(`${api.url}/v1/codec/decode`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-namespace' },
      });
    const ui = await preflight(UI);
    expect(ui.status).toBe(204);
    expect(ui.headers.get('access-control-allow-origin')).toBe(UI);
    expect(ui.headers.get('access-control-allow-credentials')).toBe('true');
    expect(ui.headers.get('access-control-allow-methods')).toBe('POST');
    expect(ui.headers.get('access-control-allow-headers')).toContain('x-namespace');

    for (const origin of ['https://evil.example', 'http://localhost:8233', 'http://127.0.0.1:8234']) {
      const other = await preflight(origin);
      expect(other.status, origin).toBe(403);
      expect(other.headers.get('access-control-allow-origin'), origin).toBeNull();
    }
    // The actual request: the UI origin is told it may read the answer, another origin is not.
    const auth = { authorization: `Bearer ${reader}` };
    expect((await post('decode', { headers: { ...auth, origin: UI } })).headers.get('access-control-allow-origin')).toBe(UI);
    expect((await post('decode', { headers: { ...auth, origin: 'https://evil.example' } })).headers.get('access-control-allow-origin')).toBeNull();
  });

  it('signs a browser in: a cookie holding a decode-only, expiring key of its own, honoured for the UI origin only', async () => {
    const page = await fetch(`${api.url}/v1/codec/login`);
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/<form method="post" action="login">[\s\S]*name="key"/);

    const signIn = (key: string, cookie?: string) =>
      fetch(`${api.url}/v1/codec/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: api.url, ...(cookie ? { cookie } : {}) },
        body: new URLSearchParams({ key }).toString(),
        redirect: 'manual',
      });
    expect((await signIn('pk_test_000000000000_' + '0'.repeat(64))).status).toBe(401);
    expect((await signIn(await api.key(['prospects:read']))).status).toBe(403);

    const ok = await signIn(reader);
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('Signed in to the codec endpoint');
    const setCookie = ok.headers.get('set-cookie')!;
    expect(setCookie).toMatch(/^prospector_codec=pk_test_[0-9a-f]{12}_[0-9a-f]{64}; Max-Age=7200; Path=\/v1\/codec; Expires=.*; HttpOnly; SameSite=Strict$/);
    const session = /^prospector_codec=([^;]+)/.exec(setCookie)![1]!;
    expect(session).not.toBe(reader);
    const auth = await store.authenticate(session);
    expect(auth.ok && auth.key).toMatchObject({ name: 'codec session (browser)', identity: 'ana@prospector.example', scopes: ['payloads:decode'] });
    const expiresIn = auth.ok ? auth.key.expiresAt!.getTime() - Date.now() : 0;
    expect(expiresIn).toBeGreaterThan(7_100_000);
    expect(expiresIn).toBeLessThanOrEqual(7_200_000);

    const cookie = `prospector_codec=${session}`;
    expect((await post('decode', { headers: { cookie, origin: UI } })).status).toBe(200);
    expect((await post('decode', { headers: { cookie } })).status).toBe(200); // no Origin: not a cross-origin browser call
    expect((await post('decode', { headers: { cookie, origin: 'https://evil.example' } })).status).toBe(401);
    // The cookie opens the codec only: another route does not read it.
    expect((await fetch(`${api.url}/v1/prospects`, { headers: { cookie } })).status).toBe(401);

    // Signing in again from the same browser ends the previous session.
    const again = await signIn(reader, cookie);
    expect(again.status).toBe(200);
    expect((await post('decode', { headers: { cookie, origin: UI } })).status).toBe(401);
    const next = /^prospector_codec=([^;]+)/.exec(again.headers.get('set-cookie')!)![1]!;
    expect((await post('decode', { headers: { cookie: `prospector_codec=${next}`, origin: UI } })).status).toBe(200);

    // Every decode is audited under the session's key.
    const sessionId = auth.ok ? auth.key.id : '';
    await expect
      .poll(async () => (await db.pool.query(`SELECT decision FROM api_auth_audit WHERE key_id = $1 AND operation_id = 'decodePayloads' ORDER BY id`, [sessionId])).rows.map((r) => r.decision), { timeout: 5_000 })
      .toEqual(['allow', 'allow', 'deny_revoked']);
  });

  it('says so when PAYLOAD_KEYS is not configured (503), while the rest of the API works', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'codec-nokeys-'));
    const bare = await loadConfig({ env: {}, overrides: { DATA_DIR: dataDir, TEMPORAL_UI_URL: UI } });
    const other = await startProspectsApi({ config: bare, pool: db.pool, temporal: temporal.client, taskQueue: uniqueTaskQueue('codec'), dispatcher: false });
    try {
      const res = await fetch(`${other.url}/v1/codec/decode`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${reader}` }, body: '{"payloads":[]}' });
      expect(res.status).toBe(503);
      expect(((await res.json()) as { detail: string }).detail).toMatch(/^PAYLOAD_KEYS: not set/);
      expect((await fetch(`${other.url}/healthz`)).status).toBe(200);
    } finally {
      await other.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
