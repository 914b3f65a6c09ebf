import { createApp } from './app.js';
import type { ApiDeps } from './deps.js';
import { allRoutes } from './routes/index.js';
import { createSecurity } from './security/index.js';

/** The complete API (routes, security, extras) as production runs it; tests use the same. */
export async function buildApi(deps: ApiDeps) {
  const security = await createSecurity(deps);
  const app = createApp({
    ...deps,
    routes: allRoutes(deps),
    routeMiddleware: security.middleware,
    checks: security.checks,
    extras: security.extras,
  });
  return { app, close: () => security.close() };
}
