import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { ApiKeyStore } from '../../lib/store/api-keys.js';
import { grants } from '../../lib/domain/scopes.js';
import type { Logger } from '../../lib/config/logger.js';
import { formatRateLimit, parseRateLimit, type RateLimit, type SecurityConfig } from '../../lib/config/security.js';
import { sendProblem } from '../problem.js';
import type { AnyRoute, Caller, Scope } from '../route.js';
import type { AuthAuditRow, AuthAuditWriter, Decision } from './audit.js';
import type { LimitCheck, RateLimits } from './rate-limit.js';
import { FailedAuthLimiter } from './failed-auth.js';
import { stepDuration } from '../metrics.js';

const REALM = 'Bearer realm="prospector"';

/** What the audit row of one request will say; filled in as the request goes through auth and limits. */
interface PendingAudit {
  decision?: Decision;
  keyId: string | null;
  keyPrefix: string | null;
  keyRateLimit: string | null;
}

export interface SecurityMiddlewareDeps {
  store: ApiKeyStore;
  limits: RateLimits;
  audit: AuthAuditWriter;
  settings: SecurityConfig;
  log: Logger;
}

/** "POST /v1/prospects/:id/approve": the route as audited. */
export function routeLabel(route: AnyRoute): string {
  return `${route.method.toUpperCase()} /v1${route.path}`;
}

/** The counter a route's requests share (RouteSpec.rateLimit, else method and path). */
export function routeBucket(route: AnyRoute): string {
  return route.rateLimit ?? `${route.method.toUpperCase()} ${route.path}`;
}

/** The configured limit for a route: RATE_LIMIT_ROUTES by operationId, bucket or "METHOD /v1/path", else the default. */
export function routeLimit(route: AnyRoute, settings: SecurityConfig, fallback: RateLimit | undefined): RateLimit | undefined {
  const routes = settings.rateLimits.routes;
  for (const name of [route.operationId, routeBucket(route), routeLabel(route)]) {
    if (name in routes) return routes[name];
  }
  return fallback;
}

/** Names in RATE_LIMIT_ROUTES that match no route (a typo would silently leave the default in place). */
export function unknownRouteLimits(routes: AnyRoute[], settings: SecurityConfig): string[] {
  const known = new Set(routes.flatMap((r) => [r.operationId, routeBucket(r), routeLabel(r)]));
  return Object.keys(settings.rateLimits.routes).filter((name) => !known.has(name));
}

/**
 * The per-route middleware of every /v1 route: an address over its
 * failed-auth budget is refused first, then auth (keys and scopes), then rate limits.
 */
export function securityMiddleware(deps: SecurityMiddlewareDeps): (route: AnyRoute) => RequestHandler[] {
  const failures = new FailedAuthLimiter(deps.limits, deps.settings.rateLimits.authFailures);
  return (route) => {
    const handlers: RequestHandler[] = [];
    if (route.auth !== 'public' && failures.limit) handlers.push(refuseSpentAddresses(route, failures, deps));
    if (typeof route.auth === 'object') handlers.push(authenticate(route, route.auth.scope, failures, deps));
    handlers.push(rateLimit(route, deps));
    return handlers;
  };
}

/**
 * Keyed and signed routes: an address that spent its failed-auth budget gets
 * 429 before its key or signature is looked at. A signed webhook checks its
 * own signature, so its 401s are counted here once answered.
 */
function refuseSpentAddresses(route: AnyRoute, failures: FailedAuthLimiter, deps: SecurityMiddlewareDeps): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const address = req.ip ?? 'unknown';
    const blockedFor = failures.blockedFor(address);
    if (blockedFor !== undefined) return tooManyFailures(req, res, route, failures, blockedFor, deps.audit);
    if (route.auth === 'signed-webhook') {
      res.once('finish', () => {
        if (res.statusCode === 401) void spendFailure(failures, address, deps.log);
      });
    }
    next();
  };
}

let lastFailureWarning = 0;

/** Spends a failed-auth point; a store that cannot count lets the 401 through (and says so, at most every 10 s). */
async function spendFailure(failures: FailedAuthLimiter, address: string, log: Logger) {
  try {
    return await failures.failed(address);
  } catch (err) {
    if (Date.now() - lastFailureWarning > 10_000) {
      lastFailureWarning = Date.now();
      log.warn({ err: (err as Error).message }, 'failed-auth limit check failed; request answered 401');
    }
    return undefined;
  }
}

/** 429 for an address over its failed-auth budget: counted in the audit (AuthAuditWriter.refused), not one row each. */
function tooManyFailures(req: Request, res: Response, route: AnyRoute, failures: FailedAuthLimiter, resetS: number, writer: AuthAuditWriter): void {
  if (typeof route.auth === 'object') {
    writer.refused(auditRow(req, route, route.auth.scope, { keyId: null, keyPrefix: null, decision: 'deny_rate', status: 429, at: new Date() }));
  }
  res.set('Retry-After', String(resetS));
  sendProblem(res, {
    title: 'Too many requests',
    status: 429,
    detail: `Too many failed authentications from this address (limit ${formatRateLimit(failures.limit)}); retry in ${resetS} s.`,
  });
}

function authenticate(route: AnyRoute, scope: Scope, failures: FailedAuthLimiter, deps: SecurityMiddlewareDeps): RequestHandler {
  return async (req: Request, res: Response, next: NextFunction) => {
    const audit = startAudit(req, res, route, scope, deps.audit);
    /** A 401, unless this failure is beyond the address's budget: then 429, counted instead of its own row. */
    const refuse = async (decision: Decision, error: 'invalid_request' | 'invalid_token' | undefined, detail: string) => {
      const spent = await spendFailure(failures, req.ip ?? 'unknown', deps.log);
      if (spent?.beyond) return tooManyFailures(req, res, route, failures, spent.resetS, deps.audit);
      audit.decision = decision;
      unauthorized(res, error, detail);
    };
    const presented = presentedKey(req);
    if (presented.kind !== 'key') {
      return refuse('deny_unauthenticated', presented.kind === 'missing' ? undefined : 'invalid_request', presented.kind === 'missing'
        ? 'An API key is required: send "Authorization: Bearer <key>" or "X-API-Key: <key>".'
        : 'The Authorization header must be "Bearer <key>".');
    }
    let result;
    try {
      result = await deps.store.authenticate(presented.key);
    } catch (err) {
      // The key store (PostgreSQL) is unreachable: a temporary condition, not the caller's fault.
      deps.log.warn({ err: (err as Error).message, route: routeLabel(route) }, 'API key lookup failed');
      res.set('Retry-After', '1');
      return sendProblem(res, { title: 'Service unavailable', status: 503, detail: 'API keys cannot be checked right now; retry shortly.' });
    }
    if (!result.ok) {
      audit.keyId = result.key?.id ?? null;
      audit.keyPrefix = result.key ? null : (result.prefix ?? null);
      if (result.reason === 'revoked') return refuse('deny_revoked', 'invalid_token', 'This API key was revoked.');
      if (result.reason === 'expired') return refuse('deny_expired', 'invalid_token', `This API key expired at ${result.key!.expiresAt!.toISOString()}.`);
      return refuse('deny_unauthenticated', 'invalid_token', 'The API key is not valid.');
    }
    const key = result.key;
    audit.keyId = key.id;
    if (!grants(key.scopes, scope)) {
      audit.decision = 'deny_scope';
      res.set('WWW-Authenticate', `${REALM}, error="insufficient_scope", scope="${scope}"`);
      return sendProblem(res, { title: 'Forbidden', status: 403, detail: `This API key lacks the scope "${scope}" needed for ${route.operationId}.`, requiredScope: scope });
    }
    audit.decision = 'allow';
    audit.keyRateLimit = key.rateLimit;
    res.locals.caller = { keyId: key.id, name: key.name, identity: key.identity, scopes: key.scopes } satisfies Caller;
    next();
  };
}

function rateLimit(route: AnyRoute, deps: SecurityMiddlewareDeps): RequestHandler {
  const { settings } = deps;
  const keyed = typeof route.auth === 'object';
  const bucket = routeBucket(route);
  const perRoute = routeLimit(route, settings, keyed ? settings.rateLimits.route : settings.rateLimits.anonymous);
  const keyLimits = new Map<string, RateLimit | undefined>();
  const keyLimit = (text: string | null) => {
    if (!text) return settings.rateLimits.key;
    if (!keyLimits.has(text)) keyLimits.set(text, safeParse(text) ?? settings.rateLimits.key);
    return keyLimits.get(text);
  };

  return async (req: Request, res: Response, next: NextFunction) => {
    const caller = res.locals.caller as Caller | undefined;
    const audit = res.locals.authAudit as PendingAudit | undefined;
    const checks: LimitCheck[] = [];
    if (keyed && caller) {
      if (perRoute) checks.push({ name: `route:${bucket}`, subject: caller.keyId, limit: perRoute });
      const across = keyLimit(audit?.keyRateLimit ?? null);
      if (across) checks.push({ name: 'key', subject: caller.keyId, limit: across });
    } else if (!keyed && perRoute) {
      checks.push({ name: `anon:${bucket}`, subject: `ip:${req.ip ?? 'unknown'}`, limit: perRoute });
    }
    let outcome;
    try {
      const started = performance.now();
      outcome = await deps.limits.consume(checks);
      if (checks.length > 0) stepDuration.observe({ step: 'rate_limit' }, (performance.now() - started) / 1000);
    } catch (err) {
      // Only reached when the store and its in-memory insurance both fail: let the request through.
      deps.log.warn({ err: (err as Error).message }, 'rate limit check failed; request allowed');
      return next();
    }
    if (!outcome) return next();
    const { check, remaining, resetS } = outcome.reported;
    res.set({
      'RateLimit-Limit': String(check.limit.points),
      'RateLimit-Remaining': String(remaining),
      'RateLimit-Reset': String(resetS),
      'RateLimit-Policy': `${check.limit.points};w=${check.limit.durationS}`,
    });
    if (outcome.allowed) return next();
    if (audit) audit.decision = 'deny_rate';
    else startAudit(req, res, route, null, deps.audit).decision = 'deny_rate';
    res.set('Retry-After', String(resetS));
    const whose = check.name === 'key' ? 'this API key across all routes' : keyed ? `this API key on ${route.operationId}` : `this client on ${route.operationId}`;
    sendProblem(res, {
      title: 'Too many requests',
      status: 429,
      detail: `Rate limit of ${formatRateLimit(check.limit)} for ${whose} exceeded; retry in ${resetS} s.`,
    });
  };
}

function safeParse(text: string): RateLimit | undefined {
  try {
    return parseRateLimit(text);
  } catch {
    return undefined;
  }
}

type Presented = { kind: 'key'; key: string } | { kind: 'missing' } | { kind: 'bad-header' };

/** The key from `Authorization: Bearer` (preferred) or `X-API-Key`. */
function presentedKey(req: Request): Presented {
  const header = req.headers.authorization;
  if (header !== undefined && header.trim() !== '') {
    const match = /^Bearer +(\S+) *$/i.exec(header);
    return match ? { kind: 'key', key: match[1]! } : { kind: 'bad-header' };
  }
  const apiKey = req.headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey.trim() !== '') return { kind: 'key', key: apiKey.trim() };
  return { kind: 'missing' };
}

function unauthorized(res: Response, error: 'invalid_request' | 'invalid_token' | undefined, detail: string): void {
  res.set('WWW-Authenticate', error ? `${REALM}, error="${error}"` : REALM);
  sendProblem(res, { title: 'Unauthorized', status: 401, detail });
}

/** Registers the request's audit row, written when the response is done (with its final status). */
function startAudit(req: Request, res: Response, route: AnyRoute, scope: Scope | null, writer: AuthAuditWriter): PendingAudit {
  const pending: PendingAudit = { keyId: null, keyPrefix: null, keyRateLimit: null };
  res.locals.authAudit = pending;
  const at = new Date();
  res.once('close', () => {
    if (!pending.decision) return;
    // A client that hung up before the answer gets nginx's 499.
    const status = res.writableFinished ? res.statusCode : 499;
    writer.record(auditRow(req, route, scope, { at, keyId: pending.keyId, keyPrefix: pending.keyPrefix, decision: pending.decision, status }));
  });
  return pending;
}

function auditRow(req: Request, route: AnyRoute, scope: Scope | null, row: Pick<AuthAuditRow, 'at' | 'keyId' | 'keyPrefix' | 'decision' | 'status'>): AuthAuditRow {
  return {
    ...row,
    route: routeLabel(route),
    operationId: route.operationId,
    method: req.method,
    requestId: header(req, 'x-request-id'),
    traceId: traceId(req),
    scope,
    clientIp: req.ip ?? null,
  };
}

function header(req: Request, name: string): string | null {
  const value = req.headers[name];
  return typeof value === 'string' ? value.slice(0, 128) : null;
}

/** The W3C trace id of the request (traceparent), when the caller or a proxy sent one. */
function traceId(req: Request): string | null {
  const match = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(header(req, 'traceparent') ?? '');
  return match && !/^0+$/.test(match[1]!) ? match[1]! : null;
}
