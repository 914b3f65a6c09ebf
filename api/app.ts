import { randomUUID } from 'node:crypto';
import express, { type Request, type RequestHandler, type Response } from 'express';
import cors from 'cors';
import helmet from 'helmet';
import type { Client } from '@temporalio/client';
import type { Config } from '../lib/config/config.js';
import type { Pool } from '../lib/store/db.js';
import type { Logger } from '../lib/config/logger.js';
import { jsonBody } from './body.js';
import { CODEC_BODY_LIMIT, CODEC_PATH } from './routes/codec.js';
import { createApiMetrics, nameRoute, routeOf, UNMATCHED } from './metrics.js';
import { errorHandler, notFoundHandler, sendProblem } from './problem.js';
import { buildRouter, type AnyRoute, type RouteMiddleware } from './route.js';
import { checkDependencies, postgresCheck, temporalCheck, type DependencyCheck } from './readiness.js';

export interface AppDeps {
  config: Config;
  pool: Pool;
  temporal: Client;
  log: Logger;
  /** Extra readiness checks (e.g. Redis when configured). */
  checks?: DependencyCheck[];
  /** Declared routes mounted under /v1. */
  routes?: AnyRoute[];
  /** Per-route middleware (auth, rate limits) applied to every declared route. */
  routeMiddleware?: RouteMiddleware[];
  /** Mounted before the routes, outside /v1 (metrics, docs, the approval inbox). */
  extras?: { path: string; handler: RequestHandler | express.Router }[];
}

/**
 * The thin HTTP face of Prospector: it validates, starts/signals/queries
 * workflows and reads the read model. It holds no business state itself.
 */
export function createApp(deps: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', 'loopback');
  app.use(helmet());
  // Browsers may call the API only from the configured origins (CORS_ORIGINS); none by default.
  if (deps.config.api.corsOrigins.length > 0) app.use(corsAllowList(deps.config.api.corsOrigins));
  const metrics = createApiMetrics();
  app.use(requestLog(deps.log, metrics.observe));
  // Size and nesting limits before any route sees a body; the raw bytes are kept for signature checks.
  // The codec endpoint's bodies are whole Temporal payloads (api/routes/codec.ts); a body parsed here is not parsed again below.
  app.use(CODEC_PATH, jsonBody({ limit: CODEC_BODY_LIMIT, maxDepth: deps.config.api.jsonMaxDepth }));
  app.use(jsonBody({ limit: deps.config.api.bodyLimit, maxDepth: deps.config.api.jsonMaxDepth }));

  app.get('/metrics', metrics.handler);

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  const checks = [postgresCheck(deps.pool), temporalCheck(deps.temporal, deps.config.temporal.namespace), ...(deps.checks ?? [])];
  app.get('/readyz', async (_req, res) => {
    const results = await checkDependencies(checks);
    const down = Object.entries(results).filter(([, r]) => !r.ok);
    if (down.length === 0) return void res.json({ status: 'ready', checks: results });
    sendProblem(res, {
      title: 'Not ready',
      status: 503,
      detail: `Unavailable: ${down.map(([, r]) => `${r.label} (${r.error})`).join('; ')}`,
      down: down.map(([name]) => name),
      checks: results,
    });
  });

  // Named by their mount path (nameRoute('') is the path they are mounted at).
  for (const extra of deps.extras ?? []) app.use(extra.path, nameRoute(''), extra.handler);
  app.use('/v1', buildRouter(deps.routes ?? [], deps.routeMiddleware));

  app.use(nameRoute(UNMATCHED), notFoundHandler);
  app.use(errorHandler((err, req) => deps.log.error({ err: { message: err.message, name: err.name, stack: err.stack }, requestId: req.headers['x-request-id'] }, 'unhandled error')));
  return app;
}

/** One log line per request, with its id and route template; never the path (ids, emails), headers with credentials or bodies. */
function requestLog(log: Logger, observe: (req: Request, res: Response, seconds: number) => void) {
  return (req: Request, res: Response, next: () => void) => {
    const incoming = req.headers['x-request-id'];
    const requestId = typeof incoming === 'string' && /^[\w-]{1,64}$/.test(incoming) ? incoming : randomUUID();
    req.headers['x-request-id'] = requestId;
    res.setHeader('x-request-id', requestId);
    const started = performance.now();
    res.on('finish', () => {
      observe(req, res, (performance.now() - started) / 1000);
      const level = res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'debug';
      log[level]({ requestId, method: req.method, route: routeOf(req, res), status: res.statusCode, ms: Math.round(performance.now() - started) }, 'request');
    });
    next();
  };
}

/** CORS for the allow-listed origins only ("*" allows any); keys travel in headers, never cookies. */
function corsAllowList(origins: string[]) {
  const any = origins.includes('*');
  return cors({
    origin: (origin, done) => done(null, any || (origin !== undefined && origins.includes(origin))),
    methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: ['authorization', 'x-api-key', 'content-type', 'x-request-id', 'traceparent', 'idempotency-key'],
    exposedHeaders: ['ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset', 'ratelimit-policy', 'retry-after', 'x-request-id', 'www-authenticate', 'location'],
    credentials: false,
    maxAge: 600,
  });
}
