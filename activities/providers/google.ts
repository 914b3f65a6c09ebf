// Per-API entry points of googleapis: the package root loads every Google API
// (~1.2 s at start-up); these load Gmail and Calendar only (~0.1 s). Same classes.
import { auth as googleAuth, gmail, type gmail_v1 } from 'googleapis/build/src/apis/gmail/index.js';
import { calendar, type calendar_v3 } from 'googleapis/build/src/apis/calendar/index.js';
import type { Config } from '../../lib/config/config.js';

/**
 * Google clients (Gmail v1, Calendar v3) for the activities, pointed at the
 * sandbox or at Google by config. Business functions live elsewhere; this is
 * only how the SDK is built: one OAuth2 client refreshing from the configured
 * token endpoint, a bounded request timeout, and no SDK-level retries by
 * default, because Temporal activities own retry policy (SDK retries inside an
 * activity would multiply attempts and hide 429s from the retry policy).
 */

export type GoogleConfig = Config['providers']['google'];
export type OAuth2Client = InstanceType<typeof googleAuth.OAuth2>;
export type Gmail = gmail_v1.Gmail;
export type Calendar = calendar_v3.Calendar;

export interface GoogleClientOptions {
  /** Per-request timeout in ms (API calls and token refresh). Default 20 s. */
  timeoutMs?: number;
  /**
   * SDK (gaxios) retries for API calls. Default 0. When > 0, gaxios retries
   * idempotent methods (GET, PUT, HEAD, OPTIONS, DELETE) on 408, 429 and 5xx,
   * honouring Retry-After; POSTs (send, drafts.create) are never retried by it.
   */
  retries?: number;
  /** Reuse an OAuth2 client (one token for Gmail and Calendar). */
  auth?: OAuth2Client;
}

export const DEFAULT_GOOGLE_TIMEOUT_MS = 20_000;

/**
 * OAuth2 client holding the refresh token; it fetches an access token from
 * `cfg.tokenUrl` (google-auth-library 10: `endpoints.oauth2TokenUrl`) on first
 * use and again before expiry. Note that google-auth-library itself retries a
 * failed token refresh (up to 3 times on 429/5xx); only the token call does that.
 */
export function createGoogleAuth(cfg: GoogleConfig, options: Pick<GoogleClientOptions, 'timeoutMs'> = {}): OAuth2Client {
  if (!cfg.clientId || !cfg.clientSecret || !cfg.refreshToken) {
    throw new Error('Google credentials are incomplete: GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET and GOOGLE_REFRESH_TOKEN are needed');
  }
  const client = new googleAuth.OAuth2({
    clientId: cfg.clientId,
    clientSecret: cfg.clientSecret,
    endpoints: { oauth2TokenUrl: cfg.tokenUrl },
    transporterOptions: { timeout: options.timeoutMs ?? DEFAULT_GOOGLE_TIMEOUT_MS },
  });
  client.setCredentials({ refresh_token: cfg.refreshToken });
  return client;
}

function requestOptions(options: GoogleClientOptions) {
  const retries = options.retries ?? 0;
  return {
    timeout: options.timeoutMs ?? DEFAULT_GOOGLE_TIMEOUT_MS,
    retry: retries > 0,
    ...(retries > 0 ? { retryConfig: { retry: retries, noResponseRetries: retries } } : {}),
  };
}

export function createGmail(cfg: GoogleConfig, options: GoogleClientOptions = {}): Gmail {
  return gmail({
    version: 'v1',
    auth: options.auth ?? createGoogleAuth(cfg, options),
    rootUrl: cfg.baseUrl,
    ...requestOptions(options),
  });
}

export function createCalendar(cfg: GoogleConfig, options: GoogleClientOptions = {}): Calendar {
  return calendar({
    version: 'v3',
    auth: options.auth ?? createGoogleAuth(cfg, options),
    rootUrl: cfg.baseUrl,
    ...requestOptions(options),
  });
}

/** Gmail and Calendar sharing one OAuth2 client (one token refresh for both). */
export function createGoogleClients(cfg: GoogleConfig, options: GoogleClientOptions = {}) {
  const auth = options.auth ?? createGoogleAuth(cfg, options);
  return { auth, gmail: createGmail(cfg, { ...options, auth }), calendar: createCalendar(cfg, { ...options, auth }) };
}

export interface GoogleApiErrorInfo {
  /** HTTP status, when Google answered. */
  status?: number;
  /** Google's first `errors[].reason` (e.g. rateLimitExceeded, backendError, notFound). */
  reason?: string;
  message: string;
  /** Retry-After in seconds, when sent. */
  retryAfterSeconds?: number;
  /** Transport code when there was no answer (e.g. 'TimeoutError', 'ECONNRESET'). */
  code?: string;
}

/**
 * Reads a googleapis failure without `instanceof GaxiosError`: googleapis-common
 * exports gaxios 7.1.3's class while google-auth-library (which sends the
 * requests) throws gaxios 7.3.1's, and gaxios' cross-version instanceof only
 * matches the same version, so that check is false for real errors.
 */
export function googleApiError(err: unknown): GoogleApiErrorInfo | undefined {
  if (!err || typeof err !== 'object' || !('config' in err)) return undefined;
  const e = err as {
    message?: string;
    code?: unknown;
    cause?: { code?: unknown; name?: string };
    status?: number;
    response?: { status?: number; data?: any; headers?: { get?(name: string): string | null } };
  };
  const data = e.response?.data;
  const retryAfter = Number(e.response?.headers?.get?.('retry-after'));
  return {
    status: e.response?.status ?? e.status,
    reason: data?.error?.errors?.[0]?.reason ?? (typeof data?.error === 'string' ? data.error : undefined),
    message: data?.error?.message ?? e.message ?? 'Google API request failed',
    ...(Number.isFinite(retryAfter) && e.response?.headers?.get?.('retry-after') != null ? { retryAfterSeconds: retryAfter } : {}),
    // No answer: gaxios leaves `code` unset for aborts (timeouts); the cause names it.
    ...(!e.response ? { code: String(e.code ?? e.cause?.code ?? e.cause?.name ?? 'UNKNOWN') } : {}),
  };
}
