import { Client } from '@hubspot/api-client';
import type { Config } from '../../lib/config/config.js';

export interface HubspotClientOptions {
  /**
   * The SDK's own retries (0–6). Default 0: the Temporal activity retry policy owns retrying, and the SDK's
   * retry decorator is process-global (each `new Client()` replaces it; an API group such as `crm.contacts` takes
   * whichever was set last when it is first touched).
   */
  retries?: number;
}

/**
 * A HubSpot client pointed at the configured base URL (the sandbox's `/hubspot` prefix, or api.hubapi.com).
 *
 * No socket timeout: in SDK 13.5.0 the client-level `middleware` and `httpAgent` settings are never applied
 * (its generated code only runs call-time middleware), and the SDK sets no timeout of its own. A hung call is
 * bounded by the activity's startToCloseTimeout.
 */
export function createHubspot(cfg: Config['providers']['hubspot'], opts: HubspotClientOptions = {}): Client {
  return new Client({
    accessToken: cfg.accessToken,
    // The SDK concatenates basePath and '/crm/v3/...' as strings, so a trailing slash would double up.
    basePath: cfg.baseUrl.replace(/\/+$/, ''),
    numberOfApiCallRetries: opts.retries ?? 0,
  });
}

/** What a failed HubSpot call said. The SDK keeps the raw error body (its `Error` model is never applied). */
export interface HubspotErrorDetails {
  status: number;
  message?: string;
  /** VALIDATION_ERROR, CONFLICT, OBJECT_NOT_FOUND, ...; RATE_LIMIT (from `errorType`) on a 429. */
  category?: string;
  correlationId?: string;
  /** TEN_SECONDLY_ROLLING or DAILY on a 429. */
  policyName?: string;
  retryAfterSeconds?: number;
}

/** Details of an SDK `ApiException`; undefined for anything else (network errors, timeouts). */
export function hubspotErrorDetails(err: unknown): HubspotErrorDetails | undefined {
  const e = err as { code?: unknown; headers?: Record<string, string>; body?: unknown } | null;
  if (!e || typeof e.code !== 'number' || !e.headers) return undefined;
  const body = (typeof e.body === 'object' && e.body ? e.body : {}) as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const retryAfter = e.headers['retry-after'];
  return {
    status: e.code,
    message: str(body.message),
    category: str(body.category) ?? str(body.errorType),
    correlationId: str(body.correlationId),
    policyName: str(body.policyName),
    retryAfterSeconds: retryAfter !== undefined && Number.isFinite(Number(retryAfter)) ? Number(retryAfter) : undefined,
  };
}
