import type { RequestHandler, Router } from 'express';
import pg from 'pg';
import { ApiKeyStore } from '../../lib/store/api-keys.js';
import { ConfigError } from '../../lib/config/config.js';
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
  close(): Promise<void>;
}

export interface SecurityOptions {
  /** Settings instead of the loaded configuration's `security` (tests, benchmarks). */
  settings?: SecurityConfig;
  /** Wall clock for key expiry (tests). */
  now?: () => Date;
  /** The routes to secure and document; defaults to allRoutes(deps). */
  routes?: AnyRoute[];
  /** Test mode: called for every response that does not match the OpenAPI document. */
  onContractViolation?: (violation: ContractViolation) => void;
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

  // PostgreSQL counters of long-gone windows are pruned here, once per replica every few minutes.
  const prune = setInterval(() => void limits.prune().catch(() => undefined), 5 * 60_000);
  prune.unref();

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
    async close() {
      clearInterval(prune);
      await Promise.all([audit.close().finally(() => auditPool.end()), limits.close()]);
    },
  };
}
