import type { RequestHandler, Router } from 'express';
import pg from 'pg';
import { ApiKeyStore } from '../../lib/store/api-keys.js';
import { ConfigError } from '../../lib/config/config.js';
import { pruneAuthAudit } from '../../lib/store/auth-audit.js';
import { pruneReceipts } from '../../lib/store/webhooks.js';
import type { SecurityConfig } from '../../lib/config/security.js';
import type { ApiDeps } from '../deps.js';
import { docsRouter, openApiHandler } from '../docs.js';
import { buildOpenApi, type OpenApiDocument } from '../openapi.js';
import type { DependencyCheck } from '../readiness.js';
import type { AnyRoute, RouteMiddleware } from '../route.js';
import { allRoutes } from '../routes/index.js';
import { AuthAuditWriter } from './audit.js';
import { contractChecker, type ContractViolation } from './contract.js';
import { securityMiddleware, unknownRouteLimits } from './middleware.js';
import { RateLimits } from './rate-limit.js';
import { registerKeyStore } from './store.js';

export interface Security {
  /** Applied to every declared /v1 route, in order (auth, then rate limit). */
  middleware: RouteMiddleware[];
  /** Extra readiness checks (e.g. Redis). */
  checks: DependencyCheck[];
  /** Routes outside /v1 (docs). */
  extras: { path: string; handler: RequestHandler | Router }[];
  /** One round of the periodic pruning (also run by a timer): what each part deleted. */
  prune(): Promise<PruneResult>;
  close(): Promise<void>;
}

/** Rows deleted by one pruning round: auth audit rows past AUTH_AUDIT_RETENTION, expired webhook receipts, spent rate-limit counters. */
export interface PruneResult {
  authAudit: number;
  webhookReceipts: number;
  rateLimits: number;
}

/** Every replica prunes this often (the first round shortly after it starts); rounds of several replicas do not collide. */
const PRUNE_EVERY_MS = 5 * 60_000;
const FIRST_PRUNE_MS = 15_000;

export interface SecurityOptions {
  /** Settings instead of the loaded configuration's `security` (tests, benchmarks). */
  settings?: SecurityConfig;
  /** Wall clock for key expiry (tests). */
  now?: () => Date;
  /** The routes to secure and document; defaults to allRoutes(deps). */
  routes?: AnyRoute[];
  /** Test mode: called for every response that does not match the OpenAPI document. */
  onContractViolation?: (violation: ContractViolation) => void;
  /** How often the pruning runs (tests); default every 5 minutes. */
  pruneEveryMs?: number;
}

export interface SecurityInternals extends Security {
  store: ApiKeyStore;
  limits: RateLimits;
  audit: AuthAuditWriter;
  settings: SecurityConfig;
  openapi(): OpenApiDocument;
}

/**
 * API keys with scopes, per-key and per-route rate limits, an audit row per
 * auth decision, and the OpenAPI document with its docs page.
 */
export async function createSecurity(deps: ApiDeps, options: SecurityOptions = {}): Promise<SecurityInternals> {
  const settings = options.settings ?? deps.config.security;
  const routes = options.routes ?? allRoutes(deps);
  const unknown = unknownRouteLimits(routes, settings);
  if (unknown.length > 0) {
    throw new ConfigError([{ setting: 'RATE_LIMIT_ROUTES', message: `no route named ${unknown.map((n) => `"${n}"`).join(', ')} (use an operationId such as "${routes[0]?.operationId ?? 'createProspect'}")` }]);
  }

  const store = ApiKeyStore.fromSecurity(deps.pool, settings, options.now);
  registerKeyStore(deps, store);
  const limits = await RateLimits.create({ redisUrl: deps.config.redisUrl, pool: deps.pool, log: deps.log });
  // The audit trail has a small pool of its own: its batches never queue behind
  // request traffic, and it can still drain on shutdown after the app's pool is ended.
  const auditPool = new pg.Pool({ ...deps.pool.options, max: 2 });
  auditPool.on('error', () => undefined);
  const audit = new AuthAuditWriter(auditPool, deps.log, settings.audit);

  let document: OpenApiDocument | undefined;
  const openapi = () => (document ??= buildOpenApi(routes, { version: process.env.npm_package_version }));

  const middleware: RouteMiddleware[] = [];
  if (options.onContractViolation) middleware.push(contractChecker(openapi(), options.onContractViolation));
  middleware.push(securityMiddleware({ store, limits, audit, settings, log: deps.log }));

  // What would otherwise grow without end is pruned here, by every replica: rate-limit counters of
  // long-gone windows, auth audit rows past their retention, expired webhook receipts. Each delete
  // is idempotent and skips rows another replica is deleting, so rounds may overlap.
  let pruning: Promise<PruneResult> | undefined;
  const prune = (): Promise<PruneResult> =>
    (pruning ??= (async () => {
      const [authAudit, webhookReceipts, rateLimits] = await Promise.all([
        pruneAuthAudit(deps.pool, settings.audit.retentionMs),
        pruneReceipts(deps.pool),
        limits.prune(),
      ]);
      return { authAudit, webhookReceipts, rateLimits };
    })().finally(() => {
      pruning = undefined;
    }));
  let lastPruneWarning = 0;
  const pruneQuietly = () =>
    void prune().catch((err: Error) => {
      if (Date.now() - lastPruneWarning < 60_000) return;
      lastPruneWarning = Date.now();
      deps.log.warn({ err: err.message }, 'pruning the auth audit, webhook receipts or rate-limit counters failed; retrying on the next round');
    });
  const everyMs = options.pruneEveryMs ?? PRUNE_EVERY_MS;
  const firstPrune = setTimeout(pruneQuietly, Math.min(FIRST_PRUNE_MS, everyMs));
  const pruneTimer = setInterval(pruneQuietly, everyMs);
  firstPrune.unref();
  pruneTimer.unref();

  return {
    middleware,
    checks: limits.checks(),
    extras: [
      { path: '/openapi.json', handler: openApiHandler(openapi) },
      { path: '/docs', handler: docsRouter() },
    ],
    store,
    limits,
    audit,
    settings,
    openapi,
    prune,
    async close() {
      clearTimeout(firstPrune);
      clearInterval(pruneTimer);
      await pruning?.catch(() => undefined);
      await Promise.all([audit.close().finally(() => auditPool.end()), limits.close()]);
    },
  };
}
