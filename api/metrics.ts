import type { Application, NextFunction, Request, Response } from 'express';
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Where a request's time goes, process-wide (every app in this process adds to
 * the same series): storing a lead durably (its commit) and checking its rate
 * limits (a round trip to the shared store). Observed by the code doing the work.
 */
const stepRegistry = new Registry();
export const stepDuration = new Histogram({
  name: 'prospector_api_step_duration_seconds',
  help: 'Time of one step of a request: lead_store (the durable commit of a submitted lead), rate_limit (the shared rate-limit check)',
  labelNames: ['step'] as const,
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers: [stepRegistry],
});

/**
 * What a request is called in metrics and the request log: its route
 * template ("/v1/prospects/:id/approve"), or "unmatched" for every request no
 * route took (unknown paths, bodies refused before routing), whatever its
 * status. Never the path itself: paths carry ids and email addresses, and a
 * label per path would grow /metrics with every request.
 */
export const UNMATCHED = 'unmatched';
const ROUTE = 'prospectorRoute';

/** Names the request by its route template; the first handler of every route runs it (api/route.ts, api/app.ts). */
export function nameRoute(template: string) {
  return (req: Request, res: Response, next: NextFunction) => {
    res.locals[ROUTE] = template === UNMATCHED ? UNMATCHED : `${req.baseUrl}${template}`;
    next();
  };
}

/** The request's name (see UNMATCHED): the one given by nameRoute, else the Express route that took it. */
export function routeOf(req: Request, res: Response): string {
  const named = res.locals[ROUTE];
  if (typeof named === 'string') return named;
  const template: unknown = req.route?.path;
  return typeof template === 'string' ? `${req.baseUrl}${template}` : UNMATCHED;
}

/** Reads the intake outbox depth (api/services/intake-dispatcher.ts); set on the app by buildApi. */
export type OutboxDepthSource = () => Promise<{ pending: number; oldestAgeSeconds: number }>;

const OUTBOX_DEPTH = 'prospectorOutboxDepth';

/** Makes /metrics of this app report the intake outbox depth. */
export function reportOutboxDepth(app: Application, source: OutboxDepthSource): void {
  app.locals[OUTBOX_DEPTH] = source;
}

/** Prometheus metrics of the API process: runtime defaults, request latency by route, the intake outbox depth. */
export function createApiMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'prospector_api_' });
  const requests = new Histogram({
    name: 'prospector_http_request_duration_seconds',
    help: 'HTTP request latency by route template, method and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  // Leads stored but not yet started in Temporal: grows while Temporal is down or slower than submissions.
  const outboxPending = new Gauge({
    name: 'prospector_intake_outbox_pending',
    help: 'Submitted leads whose intake has not been started in Temporal yet',
    registers: [registry],
  });
  const outboxOldest = new Gauge({
    name: 'prospector_intake_outbox_oldest_seconds',
    help: 'Age of the oldest submitted lead whose intake has not been started yet (0 when none waits)',
    registers: [registry],
  });
  return {
    registry,
    /** Records each request under its route template or "unmatched" (routeOf), never its path. */
    observe(req: Request, res: Response, seconds: number) {
      requests.observe({ method: req.method, route: routeOf(req, res), status: String(res.statusCode) }, seconds);
    },
    async handler(req: Request, res: Response) {
      const depth = req.app.locals[OUTBOX_DEPTH] as OutboxDepthSource | undefined;
      // The database is shared by all replicas: each reports the same depth (alert on max, not sum).
      const read = await depth?.().catch(() => undefined);
      if (read) {
        outboxPending.set(read.pending);
        outboxOldest.set(read.oldestAgeSeconds);
      }
      res.type(registry.contentType).send((await registry.metrics()) + (await stepRegistry.metrics()));
    },
  };
}
