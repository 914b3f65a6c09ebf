import type { Request, Response } from 'express';
import { collectDefaultMetrics, Histogram, Registry } from 'prom-client';

/** Prometheus metrics of the API process: runtime defaults plus request latency by route. */
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
  return {
    registry,
    /** Records each request under its route template (never the raw path: ids would explode cardinality). */
    observe(req: Request, res: Response, seconds: number) {
      const route = req.route?.path ? `${req.baseUrl}${req.route.path}` : res.statusCode === 404 ? 'unmatched' : req.path;
      requests.observe({ method: req.method, route, status: String(res.statusCode) }, seconds);
    },
    async handler(_req: Request, res: Response) {
      res.type(registry.contentType).send(await registry.metrics());
    },
  };
}
