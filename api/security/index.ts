import type { RequestHandler, Router } from 'express';
import type { ApiDeps } from '../deps.js';
import type { DependencyCheck } from '../readiness.js';
import type { RouteMiddleware } from '../route.js';

export interface Security {
  /** Applied to every declared /v1 route, in order (auth, then rate limit). */
  middleware: RouteMiddleware[];
  /** Extra readiness checks (e.g. Redis). */
  checks: DependencyCheck[];
  /** Routes outside /v1 (docs). */
  extras: { path: string; handler: RequestHandler | Router }[];
  close(): Promise<void>;
}

// Placeholder until API keys, scopes and rate limits land.
export async function createSecurity(_deps: ApiDeps): Promise<Security> {
  return { middleware: [], checks: [], extras: [], close: async () => undefined };
}
