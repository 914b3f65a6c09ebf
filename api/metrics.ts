import type { Application, Request, Response } from 'express';
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
    /** Records each request under its route template (never the raw path: ids would explode cardinality). */
    observe(req: Request, res: Response, seconds: number) {
      const route = req.route?.path ? `${req.baseUrl}${req.route.path}` : res.statusCode === 404 ? 'unmatched' : req.path;
      requests.observe({ method: req.method, route, status: String(res.statusCode) }, seconds);
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
