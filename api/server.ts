import { asyncCommitPool } from '../lib/store/db.js';
import { createApp } from './app.js';
import { startIntakeDispatcher, type IntakeDispatcher, type IntakeDispatcherOptions } from './services/intake-dispatcher.js';
import { outboxDepth } from '../lib/store/outbox.js';
import { submissionSignal } from './services/intake-outbox.js';
import { reportOutboxDepth } from './metrics.js';
import type { IntakeApiDeps } from './services/submissions.js';
import { allRoutes } from './routes/index.js';
import { codecBrowserAccess } from './routes/codec.js';
import { createSecurity, type SecurityOptions } from './security/index.js';

const DISPATCHER_POOL_MAX = 3;

export interface BuildApiOptions {
  /** Security settings instead of the environment, contract check (tests, benchmarks). */
  security?: SecurityOptions;
  /** Intake dispatcher settings; false runs none (a replica that only takes leads). */
  dispatcher?: Partial<IntakeDispatcherOptions> | false;
}

/**
 * The complete API (routes, security, extras) as production runs it; tests use
 * the same. Every replica also runs an intake dispatcher, which starts the
 * intakes of submitted leads in Temporal; close() stops it before the
 * security parts flush.
 */
export async function buildApi(deps: IntakeApiDeps, options: BuildApiOptions = {}) {
  const security = await createSecurity(deps, options.security);
  const app = createApp({
    ...deps,
    routes: allRoutes(deps),
    routeMiddleware: security.middleware,
    checks: security.checks,
    // The Temporal UI's way in to the codec endpoint: CORS for its origin, the session cookie.
    extras: [...security.extras, codecBrowserAccess(deps.config)],
  });
  // The dispatcher has a small pool of its own, so its claims and records never queue request
  // traffic, and commits asynchronously: its writes (leases, "dispatched", the dispatch audit row)
  // are safe to lose in a PostgreSQL crash (the row is dispatched again and lands on the same run),
  // and not waiting on WAL flushes leaves them to the submissions, which must be durable.
  const dispatcherPool = options.dispatcher === false ? undefined : asyncCommitPool(deps.pool, DISPATCHER_POOL_MAX);
  const dispatcher: IntakeDispatcher | undefined = dispatcherPool && startIntakeDispatcher({ ...deps, pool: dispatcherPool, signal: submissionSignal(deps.pool) }, options.dispatcher || {});
  reportOutboxDepth(app, () => outboxDepth(deps.pool));
  return {
    app,
    dispatcher,
    security,
    async close() {
      await dispatcher?.close();
      await Promise.all([security.close(), dispatcherPool?.end()]);
    },
  };
}
