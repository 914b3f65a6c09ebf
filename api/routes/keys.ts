import ms from 'ms';
import { z } from 'zod';
import { ApiKeyError, statusOf, type ApiKey } from '../../lib/store/api-keys.js';
import { parseRateLimit } from '../../lib/config/security.js';
import type { ApiDeps } from '../deps.js';
import { HttpProblem } from '../problem.js';
import { defineRoute, SCOPES, type AnyRoute, type Caller } from '../route.js';
import { keyStoreFor } from '../security/store.js';

/** API key administration (scope admin). The plaintext key appears in exactly one response: create or rotate. */

const duration = (what: string) =>
  z
    .string()
    .max(20)
    .describe(`${what}, e.g. "90d", "24h", "0s"`)
    .transform((value, ctx) => {
      const parsed = ms(value as ms.StringValue);
      if (typeof parsed !== 'number' || !Number.isFinite(parsed) || parsed < 0) {
        ctx.addIssue({ code: 'custom', message: `expected a duration such as "90d", "24h" or "0s", got "${value}"` });
        return z.NEVER;
      }
      return parsed;
    });

const rateLimitText = z
  .string()
  .max(40)
  .describe('Requests per window across all routes for this key, e.g. "5000/1m"')
  .refine((v) => {
    try {
      return parseRateLimit(v) !== undefined;
    } catch {
      return false;
    }
  }, 'expected "<requests>/<window>" such as "5000/1m"');

const timestamp = z.iso.datetime({ offset: true });

const ApiKeyView = z
  .object({
    id: z.string(),
    prefix: z.string().describe('Public part of the key (pk_<env>_<prefix>_…), safe to log'),
    name: z.string(),
    identity: z.string().describe('Whom the key acts for: a person\'s email (decides on drafts as that approver) or service:<key id>'),
    scopes: z.array(z.enum(SCOPES)),
    status: z.enum(['active', 'expired', 'revoked']),
    rateLimit: z.string().nullable(),
    createdBy: z.string(),
    createdAt: timestamp,
    expiresAt: timestamp.nullable(),
    revokedAt: timestamp.nullable(),
    revokedReason: z.string().nullable(),
    rotatedFrom: z.string().nullable(),
    replacedBy: z.string().nullable(),
    lastUsedAt: timestamp.nullable(),
  })
  .meta({ id: 'ApiKey' });

const CreatedApiKey = ApiKeyView.extend({
  key: z.string().describe('The API key. Shown only in this response: store it now.'),
}).meta({ id: 'CreatedApiKey' });

const KeyParams = z.object({ id: z.string().regex(/^key_[0-9a-f]{12}$/, 'expected a key id such as key_0123456789ab') });

const CreateBody = z
  .object({
    name: z.string().trim().min(1).max(100),
    identity: z.string().max(320).optional().describe('The email address of the person the key belongs to; without it, a service key that cannot decide on drafts'),
    scopes: z.array(z.enum(SCOPES)).min(1),
    expiresIn: duration('Lifetime of the key').optional(),
    expiresAt: timestamp.optional(),
    rateLimit: rateLimitText.optional(),
  })
  .refine((b) => !(b.expiresIn !== undefined && b.expiresAt !== undefined), { message: 'give expiresIn or expiresAt, not both', path: ['expiresAt'] });

const RotateBody = z
  .object({
    overlap: duration('How long the old key keeps working (default API_KEY_ROTATION_OVERLAP)').optional(),
    expiresIn: duration('Lifetime of the new key (default: the old key’s lifetime)').optional(),
  })
  .optional();

const RevokeBody = z.object({ reason: z.string().max(500).optional() }).optional();

const ListQuery = z.object({
  includeRevoked: z
    .enum(['true', 'false'])
    .optional()
    .transform((v) => v === 'true'),
});

const NO_STORE = { 'cache-control': 'no-store' };

export function keyRoutes(deps: ApiDeps): AnyRoute[] {
  const store = () => keyStoreFor(deps);
  const actor = (caller: Caller | undefined) => (caller ? `key:${caller.keyId}` : 'api');

  return [
    defineRoute({
      method: 'post',
      path: '/keys',
      operationId: 'createApiKey',
      summary: 'Create an API key (the key is shown once)',
      tags: ['keys'],
      auth: { scope: 'admin' },
      body: CreateBody,
      responses: { 201: { description: 'Created; `key` is the only copy', schema: CreatedApiKey } },
      async handler({ body, caller }) {
        const s = await store();
        const expiresAt = body.expiresAt ? new Date(body.expiresAt) : body.expiresIn !== undefined ? new Date(s.now().getTime() + body.expiresIn) : null;
        const { key, plaintext } = await guard(() => s.create({ name: body.name, identity: body.identity, scopes: body.scopes, expiresAt, rateLimit: body.rateLimit ?? null, actor: actor(caller) }));
        return { status: 201, headers: NO_STORE, body: { ...view(key, s.now()), key: plaintext } };
      },
    }),
    defineRoute({
      method: 'get',
      path: '/keys',
      operationId: 'listApiKeys',
      summary: 'List API keys (never their secrets)',
      tags: ['keys'],
      auth: { scope: 'admin' },
      query: ListQuery,
      responses: { 200: { description: 'Keys, newest first', schema: z.object({ keys: z.array(ApiKeyView) }) } },
      async handler({ query }) {
        const s = await store();
        const keys = await s.list({ includeRevoked: query.includeRevoked });
        return { body: { keys: keys.map((k) => view(k, s.now())) } };
      },
    }),
    defineRoute({
      method: 'get',
      path: '/keys/:id',
      operationId: 'getApiKey',
      summary: 'Show one API key',
      tags: ['keys'],
      auth: { scope: 'admin' },
      params: KeyParams,
      responses: { 200: { description: 'The key', schema: ApiKeyView }, 404: { description: 'No such key' } },
      async handler({ params }) {
        const s = await store();
        return { body: view(await guard(() => s.get(params.id)), s.now()) };
      },
    }),
    defineRoute({
      method: 'post',
      path: '/keys/:id/rotate',
      operationId: 'rotateApiKey',
      summary: 'Rotate an API key: a new key now, the old one keeps working for the overlap',
      tags: ['keys'],
      auth: { scope: 'admin' },
      params: KeyParams,
      body: RotateBody,
      responses: {
        201: { description: 'The new key (shown once) and the old key with its new expiry', schema: z.object({ key: CreatedApiKey, previous: ApiKeyView }) },
        404: { description: 'No such key' },
        409: { description: 'The key is revoked, expired or already rotated' },
      },
      async handler({ params, body, caller }) {
        const s = await store();
        const expiresAt = body?.expiresIn !== undefined ? new Date(s.now().getTime() + body.expiresIn) : undefined;
        const result = await guard(() => s.rotate(params.id, { overlapMs: body?.overlap, actor: actor(caller), expiresAt }));
        return { status: 201, headers: NO_STORE, body: { key: { ...view(result.key, s.now()), key: result.plaintext }, previous: view(result.previous, s.now()) } };
      },
    }),
    defineRoute({
      method: 'post',
      path: '/keys/:id/revoke',
      operationId: 'revokeApiKey',
      summary: 'Revoke an API key (every API replica rejects it within a second)',
      tags: ['keys'],
      auth: { scope: 'admin' },
      params: KeyParams,
      body: RevokeBody,
      responses: { 200: { description: 'The revoked key', schema: ApiKeyView }, 404: { description: 'No such key' } },
      async handler({ params, body, caller }) {
        const s = await store();
        return { body: view(await guard(() => s.revoke(params.id, { actor: actor(caller), reason: body?.reason })), s.now()) };
      },
    }),
  ];
}

function view(k: ApiKey, now: Date): z.infer<typeof ApiKeyView> {
  const iso = (d: Date | null) => (d ? d.toISOString() : null);
  return {
    id: k.id,
    prefix: k.prefix,
    name: k.name,
    identity: k.identity,
    scopes: k.scopes,
    status: statusOf(k, now),
    rateLimit: k.rateLimit,
    createdBy: k.createdBy,
    createdAt: k.createdAt.toISOString(),
    expiresAt: iso(k.expiresAt),
    revokedAt: iso(k.revokedAt),
    revokedReason: k.revokedReason,
    rotatedFrom: k.rotatedFrom,
    replacedBy: k.replacedBy,
    lastUsedAt: iso(k.lastUsedAt),
  };
}

async function guard<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (!(err instanceof ApiKeyError)) throw err;
    const status = { invalid: 400, not_found: 404, conflict: 409 }[err.code];
    throw new HttpProblem({ title: { 400: 'Bad request', 404: 'Not found', 409: 'Conflict' }[status]!, status, detail: err.message });
  }
}
