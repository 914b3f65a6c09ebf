import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { APIError } from 'openai';
import { googleApiError } from './google.js';
import { hubspotErrorDetails } from './hubspot.js';

/**
 * How provider failures reach Temporal's retry policy: rate limits and
 * server errors are retryable (a 429's Retry-After becomes the next retry
 * delay), lost answers are retryable, and requests the provider refuses for
 * good (400, 403, 404...) are not, so a bad request does not loop.
 */

export type Provider = 'google' | 'hubspot' | 'openai';

interface Described {
  status?: number;
  reason?: string;
  message: string;
  retryAfterSeconds?: number;
}

function describe(provider: Provider, err: unknown): Described {
  if (provider === 'google') {
    const info = googleApiError(err);
    if (info) return { status: info.status, reason: info.reason ?? info.code, message: info.message, retryAfterSeconds: info.retryAfterSeconds };
  }
  if (provider === 'hubspot') {
    const info = hubspotErrorDetails(err);
    if (info) return { status: info.status, reason: info.category ?? info.policyName, message: info.message ?? `HubSpot answered ${info.status}`, retryAfterSeconds: info.retryAfterSeconds };
  }
  if (provider === 'openai' && err instanceof APIError) {
    const retryAfter = Number(err.headers?.get?.('retry-after'));
    return {
      status: err.status,
      reason: String(err.code ?? err.type ?? ''),
      message: err.message,
      retryAfterSeconds: Number.isFinite(retryAfter) && err.headers?.get?.('retry-after') != null ? retryAfter : undefined,
    };
  }
  const e = err as { message?: string; code?: string } | undefined;
  return { message: e?.message ?? String(err), reason: e?.code };
}

/** Statuses worth another attempt (401 too: a token refresh may fix it). */
function retryableStatus(status: number | undefined): boolean {
  return status === undefined || status === 401 || status === 408 || status === 409 || status === 423 || status === 429 || status >= 500;
}

/** An ApplicationFailure carrying the provider's status, reason and retry advice. */
export function providerFailure(provider: Provider, operation: string, err: unknown): ApplicationFailure {
  if (err instanceof ApplicationFailure) return err;
  const d = describe(provider, err);
  const status = d.status === undefined ? 'no answer' : String(d.status);
  return ApplicationFailure.create({
    message: `${provider} ${operation} failed (${status}${d.reason ? ` ${d.reason}` : ''}): ${d.message}`,
    type: `${provider}.${d.status ?? 'network'}`,
    nonRetryable: !retryableStatus(d.status),
    details: [{ provider, operation, status: d.status ?? null, reason: d.reason ?? null }],
    ...(d.status === 429 && d.retryAfterSeconds !== undefined ? { nextRetryDelay: Math.max(1, d.retryAfterSeconds) * 1000 } : {}),
  });
}

/** Runs one provider call, turning its failure into the right ApplicationFailure. */
export async function call<T>(provider: Provider, operation: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw providerFailure(provider, operation, err);
  }
}

/** HTTP status of a provider error, whatever the SDK. */
export function statusOf(provider: Provider, err: unknown): number | undefined {
  return describe(provider, err).status;
}

/** The running activity's cancellation signal (cancelled, timed out, worker shutting down); undefined outside an activity. */
export function activitySignal(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}

/**
 * Heartbeats while `fn` runs, so a worker killed mid-call is noticed after the
 * heartbeat timeout instead of the whole start-to-close timeout. Outside an
 * activity (unit use) it just runs `fn`.
 */
export async function withHeartbeat<T>(fn: () => Promise<T>, everyMs = 2_000): Promise<T> {
  let ctx: Context | undefined;
  try {
    ctx = Context.current();
  } catch {
    return fn();
  }
  ctx.heartbeat();
  const timer = setInterval(() => ctx!.heartbeat(), everyMs);
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}
