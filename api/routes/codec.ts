import cors from 'cors';
import express, { type NextFunction, type Request, type Response } from 'express';
import { z } from 'zod';
import type { PayloadCodec } from '@temporalio/common';
import type { Config } from '../../lib/config/config.js';
import { PayloadDecryptError, payloadFromJson, payloadToJson } from '../../lib/config/payload-codec.js';
import { payloadCodecFor } from '../../lib/config/temporal.js';
import { ConfigError } from '../../lib/config/settings.js';
import type { ApiDeps } from '../deps.js';
import { HttpProblem, sendProblem } from '../problem.js';
import { defineRoute, type AnyRoute } from '../route.js';
import { keyStoreFor } from '../security/store.js';

/**
 * The codec endpoint (Temporal's codec-server protocol): POST {endpoint}/decode
 * and {endpoint}/encode with `{payloads: [...]}` in protobuf JSON, so people
 * allowed to (scope `payloads:decode`) read the encrypted payloads of
 * lib/config/payload-codec.ts in the Temporal Web UI and the `temporal` CLI.
 * Served by the API, not a server of its own: it reuses the API's keys,
 * revocation, per-key rate limits and its audit row per request, so every
 * reading of decoded personal data is attributed to a key.
 *
 * The CLI sends the key as a header (`--codec-auth "Bearer <key>"`). The UI
 * cannot send our keys; it can send cookies ("include cross-origin
 * credentials"). So a browser signs in once at {endpoint}/login with a key
 * that holds the scope and gets a cookie holding a key of its own: scope
 * `payloads:decode` only, expiring after PAYLOAD_CODEC_SESSION_TTL, revocable
 * like any key, and sent only to this path (HttpOnly, SameSite=Strict).
 * CORS admits the Temporal UI's origin (TEMPORAL_UI_URL) and no other.
 */

export const CODEC_PATH = '/v1/codec';
export const CODEC_COOKIE = 'prospector_codec';
/** Name of the keys the sign-in makes (they show in `keys list`). */
export const CODEC_SESSION_KEY_NAME = 'codec session (browser)';
/**
 * Temporal refuses a payload over 2 MB; a request carrying that much in base64
 * JSON stays under this. The API's own limit (API_BODY_LIMIT) is far smaller.
 */
export const CODEC_BODY_LIMIT = '4mb';

/** The URL the Temporal UI and CLI are given as codec endpoint. */
export function codecEndpoint(config: Pick<Config, 'api'>): string {
  return `${config.api.publicUrl.replace(/\/$/, '')}${CODEC_PATH}`;
}

const DECODE = { scope: 'payloads:decode' } as const;
const TAGS = ['codec'];

const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'expected base64');
const JsonPayload = z
  .object({
    metadata: z.record(z.string(), base64).nullish().describe('Metadata values in base64, e.g. {"encoding": "YmluYXJ5L2VuY3J5cHRlZA=="}'),
    data: base64.nullish().describe('The payload bytes in base64'),
  })
  .meta({ id: 'Payload', description: 'A Temporal payload as protobuf JSON (temporal.api.common.v1.Payload)' });
const Payloads = z.object({ payloads: z.array(JsonPayload).max(10_000) }).meta({ id: 'Payloads' });
type PayloadsBody = z.output<typeof Payloads>;

const Html = z.string().describe('An HTML page');

export function codecRoutes(deps: ApiDeps): AnyRoute[] {
  let codec: PayloadCodec | undefined;
  // Made on first use: an API without payload keys still serves everything else.
  const codecOf = (): PayloadCodec => {
    try {
      return (codec ??= payloadCodecFor(deps.config.temporal));
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      throw new HttpProblem({ title: 'Codec not configured', status: 503, detail: err.problems.map((p) => `${p.setting}: ${p.message}`).join('; ') });
    }
  };
  const convert = async (body: PayloadsBody, direction: 'encode' | 'decode') => {
    try {
      const payloads = await codecOf()[direction](body.payloads.map(payloadFromJson));
      return { body: { payloads: payloads.map(payloadToJson) } };
    } catch (err) {
      if (err instanceof PayloadDecryptError) throw new HttpProblem({ title: 'Cannot decrypt', status: 422, detail: err.message });
      throw err;
    }
  };

  return [
    defineRoute({
      method: 'post',
      path: '/codec/decode',
      operationId: 'decodePayloads',
      summary: 'Decrypt Temporal payloads (codec-server protocol; the Temporal UI and `temporal --codec-endpoint` call it)',
      tags: TAGS,
      auth: DECODE,
      body: Payloads,
      responses: {
        200: { description: 'The payloads in clear, in the order given; payloads that were not encrypted come back unchanged', schema: Payloads },
        422: { description: 'A payload is encrypted with a key this deployment does not hold, or was altered' },
        503: { description: 'PAYLOAD_KEYS is not configured' },
      },
      handler: ({ body }) => convert(body, 'decode'),
    }),
    defineRoute({
      method: 'post',
      path: '/codec/encode',
      operationId: 'encodePayloads',
      summary: 'Encrypt Temporal payloads with the current key (codec-server protocol; the UI uses it to send signals and start workflows)',
      tags: TAGS,
      auth: DECODE,
      body: Payloads,
      responses: {
        200: { description: 'The payloads encrypted, in the order given', schema: Payloads },
        503: { description: 'PAYLOAD_KEYS is not configured' },
      },
      handler: ({ body }) => convert(body, 'encode'),
    }),
    defineRoute({
      method: 'get',
      path: '/codec/login',
      operationId: 'codecSignInPage',
      summary: 'The page where a browser signs in to the codec endpoint, for the Temporal UI',
      tags: TAGS,
      auth: 'public',
      responses: { 200: { description: 'A form asking for an API key with the scope payloads:decode', schema: Html, contentType: 'text/html' } },
      handler: ({ res }) => {
        res.set('cache-control', 'no-store').type('html').send(signInPage(deps.config));
        return undefined;
      },
    }),
    defineRoute({
      method: 'post',
      path: '/codec/login',
      operationId: 'codecSignIn',
      summary: 'Sign this browser in to the codec endpoint: sets a cookie holding a new key with only payloads:decode, expiring after PAYLOAD_CODEC_SESSION_TTL',
      tags: TAGS,
      auth: DECODE,
      responses: { 200: { description: `Signed in: the cookie ${CODEC_COOKIE} is set for ${CODEC_PATH}`, schema: Html, contentType: 'text/html' } },
      handler: async ({ caller, req, res }) => {
        const store = await keyStoreFor(deps);
        const ttl = deps.config.temporal.codecSessionTtlMs;
        const expiresAt = new Date(store.now().getTime() + ttl);
        const { key, plaintext } = await store.create({
          name: CODEC_SESSION_KEY_NAME,
          identity: caller!.identity.startsWith('service:') ? null : caller!.identity,
          scopes: ['payloads:decode'],
          expiresAt,
          actor: `key:${caller!.keyId}`,
        });
        // Signing in again ends this browser's previous session.
        const previous = cookieValue(req, CODEC_COOKIE);
        if (previous) await store.revoke(previous, { actor: `key:${caller!.keyId}`, reason: 'replaced by a new codec sign-in' }).catch(() => undefined);
        res.cookie(CODEC_COOKIE, plaintext, {
          httpOnly: true,
          sameSite: 'strict',
          secure: deps.config.api.publicUrl.startsWith('https:'),
          path: CODEC_PATH,
          maxAge: ttl,
        });
        res.set('cache-control', 'no-store').type('html').send(signedInPage(deps.config, key.id, expiresAt));
        return undefined;
      },
    }),
  ];
}

/**
 * Mounted at /v1/codec before the declared routes: CORS for the Temporal UI's
 * origin only (preflights from any other origin are refused), the session
 * cookie turned into the bearer key the security layer checks, and the
 * sign-in form's key field likewise. Bodies of whole payloads are parsed here
 * (api/app.ts gives this path CODEC_BODY_LIMIT).
 */
export function codecBrowserAccess(config: Config): { path: string; handler: express.Router } {
  const uiOrigin = new URL(config.temporal.uiUrl).origin;
  const ownOrigin = new URL(config.api.publicUrl).origin;
  const router = express.Router();
  const calls = ['/decode', '/encode'];
  router.use(
    calls,
    cors({
      origin: (origin, done) => done(null, origin === uiOrigin),
      credentials: true,
      methods: ['POST'],
      // What the UI sends: its namespace, JSON, and (with "pass access token") its own bearer.
      allowedHeaders: ['content-type', 'x-namespace', 'authorization', 'authorization-extras'],
      maxAge: 600,
    }),
  );
  router.options(calls, (req: Request, res: Response) =>
    sendProblem(res, {
      title: 'Forbidden',
      status: 403,
      detail: `Only the Temporal UI at ${uiOrigin} (TEMPORAL_UI_URL) may call the codec endpoint from a browser${req.headers.origin ? `, not ${String(req.headers.origin).slice(0, 100)}` : ''}.`,
    }),
  );
  router.post(calls, (req: Request, _res: Response, next: NextFunction) => {
    const origin = req.headers.origin;
    // The cookie speaks only for the UI (or this API's own pages); other origins must bring a key.
    if (!hasKeyHeader(req) && (!origin || origin === uiOrigin || origin === ownOrigin)) {
      const session = cookieValue(req, CODEC_COOKIE);
      if (session) req.headers.authorization = `Bearer ${session}`;
    }
    next();
  });
  router.post('/login', express.urlencoded({ extended: false, limit: '4kb' }), (req: Request, _res: Response, next: NextFunction) => {
    const key = (req.body as { key?: unknown } | undefined)?.key;
    if (!hasKeyHeader(req) && typeof key === 'string' && key.trim()) req.headers.authorization = `Bearer ${key.trim()}`;
    // The key goes no further than the auth header: the route takes no body.
    req.body = undefined;
    next();
  });
  return { path: CODEC_PATH, handler: router };
}

function hasKeyHeader(req: Request): boolean {
  return Boolean(req.headers.authorization?.trim() || (typeof req.headers['x-api-key'] === 'string' && req.headers['x-api-key'].trim()));
}

function cookieValue(req: Request, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0 || part.slice(0, eq).trim() !== name) continue;
    try {
      return decodeURIComponent(part.slice(eq + 1).trim()) || undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function page(title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
  <head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${escapeHtml(title)}</title></head>
  <body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; line-height: 1.5">
    <h1>${escapeHtml(title)}</h1>
${body}
  </body>
</html>
`;
}

function uiSteps(config: Config): string {
  const endpoint = codecEndpoint(config);
  return `    <p>In the Temporal UI (<a href="${escapeHtml(config.temporal.uiUrl)}">${escapeHtml(config.temporal.uiUrl)}</a>), the codec server settings
    name <code>${escapeHtml(endpoint)}</code> with <em>Include cross-origin credentials</em> on
    (a deployment sets that for everyone: <code>TEMPORAL_CODEC_ENDPOINT</code>, <code>TEMPORAL_CODEC_INCLUDE_CREDENTIALS=true</code>).</p>`;
}

function signInPage(config: Config): string {
  return page(
    'Read Prospector payloads in the Temporal UI',
    `    <p>Temporal holds Prospector's payloads encrypted. Sign this browser in with an API key that holds the scope
    <code>payloads:decode</code> (or <code>admin</code>); it gets a session of its own that can do nothing but decode,
    for ${escapeHtml(humanDuration(config.temporal.codecSessionTtlMs))}. Every decode is audited under that session's key.</p>
    <form method="post" action="login">
      <label>API key <input type="password" name="key" autocomplete="off" required size="60"></label>
      <button type="submit">Sign in</button>
    </form>
${uiSteps(config)}`,
  );
}

function signedInPage(config: Config, keyId: string, expiresAt: Date): string {
  return page(
    'Signed in to the codec endpoint',
    `    <p>This browser may decode payloads until ${escapeHtml(expiresAt.toISOString())} (session key <code>${escapeHtml(keyId)}</code>;
    <code>prospector keys revoke ${escapeHtml(keyId)}</code> ends it now).</p>
${uiSteps(config)}`,
  );
}

function humanDuration(ms: number): string {
  const hours = ms / 3_600_000;
  return hours >= 1 && Number.isInteger(hours) ? `${hours} hour${hours === 1 ? '' : 's'}` : `${Math.round(ms / 60_000)} minutes`;
}
