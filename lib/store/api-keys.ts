import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { SCOPES, type Scope } from '../domain/scopes.js';
import { inTransaction, type Pool } from './db.js';
import { appendAudit, type Queryable } from './audit.js';
import { loadSecurityConfig, parseRateLimit, type SecurityConfig } from '../config/security.js';
import { identitySchema, putApprover } from './approvers.js';

/**
 * API keys: `pk_<live|test>_<prefix>_<secret>`, 6 random bytes of public prefix
 * (the lookup handle, safe to show and log) and 32 random bytes of secret.
 *
 * Only HMAC-SHA256(pepper, key) is stored. Keys carry 256 bits of entropy, so a
 * slow password hash (scrypt/argon2) buys nothing against guessing and would cost
 * milliseconds per request; the keyed hash makes a stolen database useless
 * without the pepper, which lives in the secret provider, not the database.
 *
 * The only module that writes `api_keys` (the auth audit writer's last-use
 * updates go through `recordKeysUsed`).
 */

export const KEY_PATTERN = /^pk_(live|test)_([0-9a-f]{12})_([0-9a-f]{64})$/;

export interface ApiKey {
  id: string;
  prefix: string;
  name: string;
  /**
   * Whom the key acts for: a person's email (decisions on drafts are taken in
   * that name, when they are a registered approver) or `service:<key id>`.
   */
  identity: string;
  scopes: Scope[];
  /** Per-key limit across routes, e.g. "5000/1m"; null = RATE_LIMIT_KEY. */
  rateLimit: string | null;
  createdBy: string;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
  revokedReason: string | null;
  rotatedFrom: string | null;
  replacedBy: string | null;
  lastUsedAt: Date | null;
}

export type KeyStatus = 'active' | 'expired' | 'revoked';

export type AuthResult =
  | { ok: true; key: ApiKey }
  | { ok: false; reason: 'malformed' | 'unknown' | 'revoked' | 'expired'; key?: ApiKey; prefix?: string };

/** A request about keys that cannot be done as asked (maps to 400/404/409). */
export class ApiKeyError extends Error {
  constructor(
    readonly code: 'invalid' | 'not_found' | 'conflict',
    message: string,
  ) {
    super(message);
    this.name = 'ApiKeyError';
  }
}

export interface CreateKeyInput {
  name: string;
  /** The person the key belongs to (an email address); a service key when absent. */
  identity?: string | null;
  scopes: string[];
  expiresAt?: Date | null;
  rateLimit?: string | null;
  /** Who asked: "key:<id>", "cli:<user>", "dev-stack". */
  actor: string;
}

export interface ApiKeyStoreOptions {
  pepper: string;
  keyEnvironment: 'live' | 'test';
  cacheTtlMs: number;
  /** Default overlap of rotate() (24 h when not given). */
  rotationOverlapMs?: number;
  /** The wall clock used for expiry (tests inject one). */
  now?: () => Date;
}

interface StoredKey extends ApiKey {
  secretHash: Buffer;
}

interface CacheEntry {
  key: StoredKey | null;
  /** performance.now() after which the entry must be read again. */
  until: number;
}

const COLUMNS = `id, prefix, secret_hash, name, identity, scopes, rate_limit, created_by, created_at, expires_at,
  revoked_at, revoked_reason, rotated_from, replaced_by, last_used_at`;

const CACHE_MAX = 10_000;

export class ApiKeyStore {
  readonly now: () => Date;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inflight = new Map<string, Promise<StoredKey | null>>();

  constructor(
    private readonly pool: Pool,
    private readonly options: ApiKeyStoreOptions,
  ) {
    this.now = options.now ?? (() => new Date());
  }

  static fromSecurity(pool: Pool, security: SecurityConfig, now?: () => Date): ApiKeyStore {
    return new ApiKeyStore(pool, { pepper: security.pepper, keyEnvironment: security.keyEnvironment, cacheTtlMs: security.keyCacheTtlMs, rotationOverlapMs: security.rotationOverlapMs, now });
  }

  /** A store configured from the environment and the config file, for callers without a loaded Config. */
  static async fromEnv(pool: Pool, overrides?: Record<string, string | undefined>): Promise<ApiKeyStore> {
    return ApiKeyStore.fromSecurity(pool, await loadSecurityConfig({ overrides }));
  }

  /** Creates a key; the returned plaintext is the only copy that will ever exist. */
  async create(input: CreateKeyInput): Promise<{ key: ApiKey; plaintext: string }> {
    const scopes = validScopes(input.scopes);
    const name = validName(input.name);
    const identity = validIdentity(input.identity);
    if (input.rateLimit) validRateLimit(input.rateLimit);
    const expiresAt = input.expiresAt ?? null;
    if (expiresAt && expiresAt.getTime() <= this.now().getTime()) throw new ApiKeyError('invalid', 'expiry must be in the future');
    return this.transaction(async (client) => {
      const made = await this.insert(client, { name, identity, scopes, expiresAt, rateLimit: input.rateLimit ?? null, actor: input.actor, rotatedFrom: null });
      await event(client, input.actor, 'create', { keyId: made.key.id, name, identity: made.key.identity, scopes, expiresAt });
      return made;
    });
  }

  async list(options: { includeRevoked?: boolean } = {}): Promise<ApiKey[]> {
    const { rows } = await this.pool.query(
      `SELECT ${COLUMNS} FROM api_keys ${options.includeRevoked ? '' : 'WHERE revoked_at IS NULL'} ORDER BY created_at DESC, id`,
    );
    return rows.map((r) => publicKey(fromRow(r)));
  }

  /** Finds a key by id ("key_<prefix>"), prefix, or the full plaintext key. */
  async get(ref: string): Promise<ApiKey> {
    return publicKey(await this.find(this.pool, ref, false));
  }

  /**
   * Issues a successor with the same name, scopes and limit. The old key keeps
   * working for `overlapMs` (0 = stops now), so clients can switch without downtime.
   */
  async rotate(ref: string, options: { overlapMs?: number; actor: string; expiresAt?: Date | null }): Promise<{ key: ApiKey; plaintext: string; previous: ApiKey }> {
    const overlapMs = options.overlapMs ?? this.options.rotationOverlapMs ?? 24 * 3_600_000;
    if (!Number.isFinite(overlapMs) || overlapMs < 0) throw new ApiKeyError('invalid', 'overlap must be zero or positive');
    const result = await this.transaction(async (client) => {
      const old = await this.find(client, ref, true);
      const now = this.now();
      const status = statusOf(old, now);
      if (status !== 'active') throw new ApiKeyError('conflict', `key ${old.id} is ${status}; create a new key instead`);
      if (old.replacedBy) throw new ApiKeyError('conflict', `key ${old.id} was already rotated to ${old.replacedBy}; rotate that key`);
      const lifetime = old.expiresAt ? old.expiresAt.getTime() - old.createdAt.getTime() : undefined;
      const expiresAt = options.expiresAt !== undefined ? options.expiresAt : lifetime !== undefined ? new Date(now.getTime() + lifetime) : null;
      const made = await this.insert(client, { name: old.name, identity: old.identity, scopes: old.scopes, expiresAt, rateLimit: old.rateLimit, actor: options.actor, rotatedFrom: old.id });
      const overlapEnd = new Date(now.getTime() + overlapMs);
      const oldExpiry = old.expiresAt && old.expiresAt < overlapEnd ? old.expiresAt : overlapEnd;
      const { rows } = await client.query(`UPDATE api_keys SET expires_at = $2, replaced_by = $3 WHERE id = $1 RETURNING ${COLUMNS}`, [old.id, oldExpiry, made.key.id]);
      await event(client, options.actor, 'rotate', { keyId: old.id, newKeyId: made.key.id, oldKeyExpiresAt: oldExpiry });
      return { ...made, previous: publicKey(fromRow(rows[0])) };
    });
    this.forget(result.previous.prefix);
    return result;
  }

  /** Revokes a key at once; every replica rejects it within the cache TTL. Revoking twice is harmless. */
  async revoke(ref: string, options: { actor: string; reason?: string }): Promise<ApiKey> {
    const key = await this.transaction(async (client) => {
      const found = await this.find(client, ref, true);
      if (found.revokedAt) return publicKey(found);
      const { rows } = await client.query(`UPDATE api_keys SET revoked_at = $2, revoked_reason = $3 WHERE id = $1 RETURNING ${COLUMNS}`, [
        found.id,
        this.now(),
        options.reason?.slice(0, 500) ?? null,
      ]);
      await event(client, options.actor, 'revoke', { keyId: found.id, reason: options.reason ?? null });
      return publicKey(fromRow(rows[0]));
    });
    this.forget(key.prefix);
    return key;
  }

  /**
   * Checks a presented key. The secret is compared in constant time before
   * anything about the key (revoked, expired) is revealed.
   */
  async authenticate(presented: string): Promise<AuthResult> {
    const match = KEY_PATTERN.exec(presented);
    if (!match) return { ok: false, reason: 'malformed' };
    const prefix = match[2]!;
    const stored = await this.lookup(prefix);
    if (!stored || !timingSafeEqual(this.hash(presented), stored.secretHash)) {
      return { ok: false, reason: 'unknown', prefix };
    }
    const key = publicKey(stored);
    const status = statusOf(key, this.now());
    if (status === 'active') return { ok: true, key };
    return { ok: false, reason: status, key };
  }

  /** Drops a cached key (this replica only; others expire theirs within the TTL). */
  forget(prefix: string): void {
    this.cache.delete(prefix);
  }

  private hash(plaintext: string): Buffer {
    return createHmac('sha256', this.options.pepper).update(plaintext).digest();
  }

  private async lookup(prefix: string): Promise<StoredKey | null> {
    const cached = this.cache.get(prefix);
    if (cached && cached.until > performance.now()) return cached.key;
    const pending = this.inflight.get(prefix);
    if (pending) return pending;
    // The entry's life starts when the read starts, so a revoke committed during
    // a slow read is still seen within one TTL.
    const started = performance.now();
    const read = this.pool
      .query(`SELECT ${COLUMNS} FROM api_keys WHERE prefix = $1`, [prefix])
      .then(({ rows }) => {
        const key = rows[0] ? fromRow(rows[0]) : null;
        if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value!);
        this.cache.set(prefix, { key, until: started + this.options.cacheTtlMs });
        return key;
      })
      .finally(() => this.inflight.delete(prefix));
    this.inflight.set(prefix, read);
    return read;
  }

  private async insert(
    client: pg.PoolClient,
    k: { name: string; identity: string | null; scopes: Scope[]; expiresAt: Date | null; rateLimit: string | null; actor: string; rotatedFrom: string | null },
  ): Promise<{ key: ApiKey; plaintext: string }> {
    for (let attempt = 0; ; attempt++) {
      const prefix = randomBytes(6).toString('hex');
      const plaintext = `pk_${this.options.keyEnvironment}_${prefix}_${randomBytes(32).toString('hex')}`;
      const res = await client.query(
        `INSERT INTO api_keys (id, prefix, secret_hash, name, identity, scopes, rate_limit, created_by, created_at, expires_at, rotated_from)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING RETURNING ${COLUMNS}`,
        [`key_${prefix}`, prefix, this.hash(plaintext).toString('hex'), k.name, k.identity ?? `service:key_${prefix}`, k.scopes, k.rateLimit, k.actor, this.now(), k.expiresAt, k.rotatedFrom],
      );
      if (res.rows[0]) return { key: publicKey(fromRow(res.rows[0])), plaintext };
      if (attempt >= 5) throw new Error('could not allocate a unique key prefix');
    }
  }

  private async find(client: Pool | pg.PoolClient, ref: string, lock: boolean): Promise<StoredKey> {
    const trimmed = ref.trim();
    const prefix = KEY_PATTERN.exec(trimmed)?.[2] ?? (/^key_[0-9a-f]{12}$/.test(trimmed) ? trimmed.slice(4) : /^[0-9a-f]{12}$/.test(trimmed) ? trimmed : undefined);
    if (!prefix) throw new ApiKeyError('not_found', `no API key "${trimmed.length > 40 ? `${trimmed.slice(0, 12)}…` : trimmed}" (give its id, e.g. key_0123456789ab)`);
    const { rows } = await client.query(`SELECT ${COLUMNS} FROM api_keys WHERE prefix = $1 ${lock ? 'FOR UPDATE' : ''}`, [prefix]);
    if (!rows[0]) throw new ApiKeyError('not_found', `no API key key_${prefix}`);
    return fromRow(rows[0]);
  }

  private transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return inTransaction(this.pool, work);
  }
}

export function statusOf(key: Pick<ApiKey, 'revokedAt' | 'expiresAt'>, now: Date): KeyStatus {
  if (key.revokedAt) return 'revoked';
  if (key.expiresAt && key.expiresAt.getTime() <= now.getTime()) return 'expired';
  return 'active';
}

function validScopes(scopes: string[]): Scope[] {
  const unique = [...new Set(scopes.map((s) => s.trim()).filter(Boolean))];
  const unknown = unique.filter((s) => !(SCOPES as readonly string[]).includes(s));
  if (unknown.length > 0) throw new ApiKeyError('invalid', `unknown scope ${unknown.map((s) => `"${s}"`).join(', ')}; known: ${SCOPES.join(', ')}`);
  if (unique.length === 0) throw new ApiKeyError('invalid', `a key needs at least one scope (${SCOPES.join(', ')})`);
  return unique as Scope[];
}

function validName(name: string): string {
  const trimmed = name.trim();
  if (!trimmed || trimmed.length > 100 || /[\u0000-\u001f]/.test(trimmed)) throw new ApiKeyError('invalid', 'a key name is 1–100 printable characters');
  return trimmed;
}

function validIdentity(identity: string | null | undefined): string | null {
  if (identity === undefined || identity === null || identity.trim() === '') return null;
  const parsed = identitySchema.safeParse(identity);
  if (!parsed.success) throw new ApiKeyError('invalid', `identity: expected the email address of the person the key belongs to, got "${identity.slice(0, 80)}"`);
  return parsed.data;
}

function validRateLimit(text: string): void {
  try {
    if (!parseRateLimit(text)) throw new Error('"off" is not allowed for a single key');
  } catch (err) {
    throw new ApiKeyError('invalid', `rate limit: ${(err as Error).message}`);
  }
}

async function event(client: pg.PoolClient, actor: string, action: string, details: Record<string, unknown>) {
  await appendAudit(client, { actor, kind: 'api_key', action, outcome: 'ok', details });
}

/**
 * Moves `last_used_at` forward to the given times (key id → last allowed use),
 * never back: batches from several replicas may land out of order.
 */
export async function recordKeysUsed(db: Queryable, lastUse: ReadonlyMap<string, Date>): Promise<void> {
  await db.query(
    `UPDATE api_keys k SET last_used_at = GREATEST(k.last_used_at, u.at)
     FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at) WHERE k.id = u.id`,
    [[...lastUse.keys()], [...lastUse.values()]],
  );
}

function fromRow(r: Record<string, unknown>): StoredKey {
  return {
    id: r.id as string,
    prefix: r.prefix as string,
    secretHash: Buffer.from(r.secret_hash as string, 'hex'),
    name: r.name as string,
    identity: r.identity as string,
    scopes: r.scopes as Scope[],
    rateLimit: (r.rate_limit as string | null) ?? null,
    createdBy: r.created_by as string,
    createdAt: r.created_at as Date,
    expiresAt: (r.expires_at as Date | null) ?? null,
    revokedAt: (r.revoked_at as Date | null) ?? null,
    revokedReason: (r.revoked_reason as string | null) ?? null,
    rotatedFrom: (r.rotated_from as string | null) ?? null,
    replacedBy: (r.replaced_by as string | null) ?? null,
    lastUsedAt: (r.last_used_at as Date | null) ?? null,
  };
}

function publicKey(k: StoredKey | ApiKey): ApiKey {
  const { secretHash: _hash, ...rest } = k as StoredKey;
  return rest;
}

export const DEV_KEY_FILE = 'dev-api-key';
/** Whom the dev stack's key acts for; registered as an approver so the README's commands work as written. */
export const DEV_IDENTITY = 'operator@prospector.example';

/**
 * For the local stack: makes sure `${dataDir}/dev-api-key` holds a working admin
 * key, creating one (and the file, mode 0600) when it is missing or no longer
 * valid. `created` tells the caller to print the key once.
 */
export async function ensureDevApiKey(
  pool: Pool,
  dataDir: string,
  options: { store?: ApiKeyStore } = {},
): Promise<{ key: string; created: boolean; file: string }> {
  const store = options.store ?? (await ApiKeyStore.fromEnv(pool));
  const file = path.join(dataDir, DEV_KEY_FILE);
  const existing = await readFile(file, 'utf8').then((t) => t.trim(), () => undefined);
  if (existing) {
    const result = await store.authenticate(existing);
    if (result.ok && result.key.scopes.includes('admin') && result.key.identity === DEV_IDENTITY) {
      await putApprover(pool, { identity: DEV_IDENTITY, name: 'Local operator (npm start)' }, 'dev-stack');
      return { key: existing, created: false, file };
    }
  }
  const { plaintext } = await store.create({ name: 'dev stack (npm start)', identity: DEV_IDENTITY, scopes: ['admin'], actor: 'dev-stack' });
  await putApprover(pool, { identity: DEV_IDENTITY, name: 'Local operator (npm start)' }, 'dev-stack');
  await mkdir(dataDir, { recursive: true });
  // Write then rename, so a reader never sees a half-written key; 0600 from the start.
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${plaintext}\n`, { mode: 0o600 });
  await rename(tmp, file);
  return { key: plaintext, created: true, file };
}
