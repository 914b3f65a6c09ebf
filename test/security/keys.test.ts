import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiKeyStore, ensureDevApiKey, KEY_PATTERN } from '../../lib/store/api-keys.js';
import { loadSecurityConfig, parseRateLimit } from '../../lib/config/security.js';
import { testDatabase } from '../helpers/stack.js';
import { runCli } from '../helpers/cli.js';

const PEPPER = 'test-pepper-0123456789abcdef0123456789abcdef';

describe('API keys', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let clock: Date;
  let store: ApiKeyStore;

  beforeAll(async () => {
    db = await testDatabase();
    clock = new Date('2030-01-01T00:00:00Z');
    store = new ApiKeyStore(db.pool, { pepper: PEPPER, keyEnvironment: 'test', cacheTtlMs: 0, rotationOverlapMs: 3_600_000, now: () => clock });
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('creates random keys with a public prefix, stored only as a keyed hash', async () => {
    const a = await store.create({ name: 'a', scopes: ['prospects:read'], actor: 'test' });
    const b = await store.create({ name: 'b', scopes: ['prospects:read'], actor: 'test' });
    expect(a.plaintext).toMatch(KEY_PATTERN);
    expect(a.plaintext).not.toBe(b.plaintext);
    const [, , prefix, secret] = KEY_PATTERN.exec(a.plaintext)!;
    expect(secret).toHaveLength(64); // 32 random bytes
    expect(a.key.id).toBe(`key_${prefix}`);
    const row = (await db.pool.query('SELECT * FROM api_keys WHERE id = $1', [a.key.id])).rows[0];
    expect(JSON.stringify(row)).not.toContain(secret);
    expect(row.secret_hash).toMatch(/^[0-9a-f]{64}$/);
    // The same key under another pepper does not verify: the hash is keyed.
    const otherPepper = new ApiKeyStore(db.pool, { pepper: `${PEPPER}-other`, keyEnvironment: 'test', cacheTtlMs: 0 });
    expect(await otherPepper.authenticate(a.plaintext)).toMatchObject({ ok: false, reason: 'unknown' });
    expect(await store.authenticate(a.plaintext)).toMatchObject({ ok: true, key: { id: a.key.id, scopes: ['prospects:read'] } });
  });

  it('rejects tampered, unknown and malformed keys without revealing anything', async () => {
    const { plaintext } = await store.create({ name: 'c', scopes: ['admin'], actor: 'test' });
    const flipped = plaintext.slice(0, -1) + (plaintext.endsWith('0') ? '1' : '0');
    expect(await store.authenticate(flipped)).toMatchObject({ ok: false, reason: 'unknown' });
    expect(await store.authenticate(plaintext.replace(/_([0-9a-f]{12})_/, '_000000000000_'))).toMatchObject({ ok: false, reason: 'unknown' });
    expect(await store.authenticate('pk_test_nope')).toMatchObject({ ok: false, reason: 'malformed' });
    expect(await store.authenticate(`${plaintext} `)).toMatchObject({ ok: false, reason: 'malformed' });
  });

  it('validates scopes, names and limits', async () => {
    await expect(store.create({ name: 'x', scopes: ['everything'], actor: 't' })).rejects.toThrow(/unknown scope "everything"/);
    await expect(store.create({ name: 'x', scopes: [], actor: 't' })).rejects.toThrow(/at least one scope/);
    await expect(store.create({ name: ' ', scopes: ['admin'], actor: 't' })).rejects.toThrow(/name/);
    await expect(store.create({ name: 'x', scopes: ['admin'], rateLimit: 'lots', actor: 't' })).rejects.toThrow(/rate limit/);
    await expect(store.create({ name: 'x', scopes: ['admin'], expiresAt: new Date(clock.getTime() - 1), actor: 't' })).rejects.toThrow(/future/);
  });

  it('expires keys by the clock', async () => {
    const { plaintext } = await store.create({ name: 'short', scopes: ['signals:read'], expiresAt: new Date(clock.getTime() + 60_000), actor: 't' });
    expect((await store.authenticate(plaintext)).ok).toBe(true);
    clock = new Date(clock.getTime() + 59_999);
    expect((await store.authenticate(plaintext)).ok).toBe(true);
    clock = new Date(clock.getTime() + 1);
    expect(await store.authenticate(plaintext)).toMatchObject({ ok: false, reason: 'expired' });
  });

  it('rotation: the new key works at once and the old one until the overlap ends', async () => {
    const old = await store.create({ name: 'rotating', scopes: ['prospects:write'], expiresAt: new Date(clock.getTime() + 90 * 86_400_000), actor: 't' });
    const rotated = await store.rotate(old.key.id, { overlapMs: 10 * 60_000, actor: 't' });
    expect(rotated.key.rotatedFrom).toBe(old.key.id);
    expect(rotated.previous.replacedBy).toBe(rotated.key.id);
    expect(rotated.previous.expiresAt!.getTime()).toBe(clock.getTime() + 10 * 60_000);
    // The successor gets a fresh lifetime as long as the old key's.
    expect(rotated.key.expiresAt!.getTime()).toBe(clock.getTime() + 90 * 86_400_000);
    expect((await store.authenticate(rotated.plaintext)).ok).toBe(true);
    expect((await store.authenticate(old.plaintext)).ok).toBe(true);
    clock = new Date(clock.getTime() + 10 * 60_000 - 1);
    expect((await store.authenticate(old.plaintext)).ok).toBe(true);
    clock = new Date(clock.getTime() + 1);
    expect(await store.authenticate(old.plaintext)).toMatchObject({ ok: false, reason: 'expired' });
    expect((await store.authenticate(rotated.plaintext)).ok).toBe(true);
    await expect(store.rotate(old.key.id, { actor: 't' })).rejects.toThrow(/expired/);
  });

  it('rotation with the default overlap, and zero overlap stops the old key now', async () => {
    const a = await store.create({ name: 'default-overlap', scopes: ['admin'], actor: 't' });
    const r = await store.rotate(a.key.prefix, { actor: 't' });
    expect(r.previous.expiresAt!.getTime()).toBe(clock.getTime() + 3_600_000);
    expect(r.key.expiresAt).toBeNull();
    await expect(store.rotate(a.key.id, { actor: 't' })).rejects.toThrow(/already rotated/);
    const r2 = await store.rotate(r.key.id, { overlapMs: 0, actor: 't' });
    expect(await store.authenticate(r.plaintext)).toMatchObject({ ok: false, reason: 'expired' });
    expect((await store.authenticate(r2.plaintext)).ok).toBe(true);
  });

  it('revocation is immediate, idempotent and recorded in audit_events', async () => {
    const { key, plaintext } = await store.create({ name: 'doomed', scopes: ['admin'], actor: 't' });
    const revoked = await store.revoke(plaintext, { actor: 't', reason: 'leaked' });
    expect(revoked.revokedReason).toBe('leaked');
    expect(await store.authenticate(plaintext)).toMatchObject({ ok: false, reason: 'revoked' });
    expect((await store.revoke(key.id, { actor: 't' })).revokedAt).toEqual(revoked.revokedAt);
    const events = await db.pool.query(`SELECT action, details FROM audit_events WHERE kind = 'api_key' AND details->>'keyId' = $1 ORDER BY id`, [key.id]);
    expect(events.rows.map((r) => r.action)).toEqual(['create', 'revoke']);
    expect((await store.list()).map((k) => k.id)).not.toContain(key.id);
    expect((await store.list({ includeRevoked: true })).map((k) => k.id)).toContain(key.id);
  });

  it('prospector keys create|list|rotate|revoke works straight against the database', async () => {
    const env = { DATABASE_URL: db.url, API_KEY_PEPPER: PEPPER, PROSPECTOR_ENV: 'test' };
    const out = await cli(['keys', 'create', '--name', 'cli-key', '--scopes', 'prospects:read,signals:read', '--expires-in', '30d', '--json'], env);
    expect(out.code).toBe(0);
    const created = JSON.parse(out.stdout);
    expect(created.key).toMatch(KEY_PATTERN);
    expect(created.scopes).toEqual(['prospects:read', 'signals:read']);

    // Same pepper as the CLI, no cache: every check reads the database.
    const cliStore = ApiKeyStore.fromSecurity(db.pool, await loadSecurityConfig({ env: {}, overrides: { ...env, API_KEY_CACHE_TTL: '0ms' } }));
    expect((await cliStore.authenticate(created.key)).ok).toBe(true);

    const plain = await cli(['keys', 'create', '--name', 'plain', '--scopes', 'admin'], env);
    expect(plain.stdout.trim()).toMatch(KEY_PATTERN); // only the key on stdout: KEY=$(prospector keys create …)
    expect(plain.stderr).toContain('only time');

    const list = await cli(['keys', 'list'], env);
    expect(list.stdout).toContain(created.id);
    expect(list.stdout).toContain('cli-key');
    expect(list.stdout).not.toContain(created.key);

    const rotate = await cli(['keys', 'rotate', created.id, '--overlap', '0s', '--json'], env);
    expect(rotate.code).toBe(0);
    const rotated = JSON.parse(rotate.stdout);
    expect(rotated.previous.id).toBe(created.id);
    expect(await cliStore.authenticate(created.key)).toMatchObject({ ok: false, reason: 'expired' });
    expect((await cliStore.authenticate(rotated.key.key)).ok).toBe(true);

    const revoke = await cli(['keys', 'revoke', rotated.key.id, '--reason', 'test'], env);
    expect(revoke.code).toBe(0);
    expect(await cliStore.authenticate(rotated.key.key)).toMatchObject({ ok: false, reason: 'revoked' });

    const bad = await cli(['keys', 'create', '--name', 'x', '--scopes', 'root'], env);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('unknown scope "root"');
    const missing = await cli(['keys', 'revoke', 'key_ffffffffffff'], env);
    expect(missing.code).toBe(4);
  });

  it('ensureDevApiKey writes an admin key once (0600) and replaces it when it stops working', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'devkey-'));
    try {
      const devStore = new ApiKeyStore(db.pool, { pepper: PEPPER, keyEnvironment: 'test', cacheTtlMs: 0 });
      const first = await ensureDevApiKey(db.pool, dir, { store: devStore });
      expect(first.created).toBe(true);
      expect(first.file).toBe(path.join(dir, 'dev-api-key'));
      expect(readFileSync(first.file, 'utf8').trim()).toBe(first.key);
      expect(statSync(first.file).mode & 0o777).toBe(0o600);
      const auth = await devStore.authenticate(first.key);
      expect(auth).toMatchObject({ ok: true, key: { scopes: ['admin'] } });

      const again = await ensureDevApiKey(db.pool, dir, { store: devStore });
      expect(again).toMatchObject({ created: false, key: first.key });

      await devStore.revoke(first.key, { actor: 'test' });
      const replaced = await ensureDevApiKey(db.pool, dir, { store: devStore });
      expect(replaced.created).toBe(true);
      expect(replaced.key).not.toBe(first.key);

      writeFileSync(first.file, 'garbage\n');
      expect((await ensureDevApiKey(db.pool, dir, { store: devStore })).created).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('settings: rate limits parse and bad values name the setting; production needs a pepper', async () => {
    expect(parseRateLimit('300/1m')).toEqual({ points: 300, durationS: 60 });
    expect(parseRateLimit('20/s')).toEqual({ points: 20, durationS: 1 });
    expect(parseRateLimit('off')).toBeUndefined();
    await expect(loadSecurityConfig({ env: {}, overrides: { RATE_LIMIT_DEFAULT: '10 per minute' } })).rejects.toThrow(/RATE_LIMIT_DEFAULT/);
    await expect(loadSecurityConfig({ env: {}, overrides: { RATE_LIMIT_ROUTES: '{"createProspect":"fast"}' } })).rejects.toThrow(/RATE_LIMIT_ROUTES: createProspect/);
    await expect(loadSecurityConfig({ env: {}, overrides: { API_KEY_CACHE_TTL: '5s' } })).rejects.toThrow(/API_KEY_CACHE_TTL/);
    await expect(loadSecurityConfig({ env: { PROSPECTOR_ENV: 'production' } })).rejects.toThrow(/API_KEY_PEPPER: required in production/);
    const prod = await loadSecurityConfig({ env: { PROSPECTOR_ENV: 'production', API_KEY_PEPPER: PEPPER } });
    expect(prod.keyEnvironment).toBe('live');
  });
});

/** The CLI with extra environment variables for the one run (restored after). */
async function cli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const { code, out, err } = await runCli(...args);
    return { code, stdout: out, stderr: err };
  } finally {
    for (const k of Object.keys(env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}
