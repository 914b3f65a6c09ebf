import type { Config } from '../lib/config/config.js';
import type { Pool } from '../lib/store/db.js';
import type { Logger } from '../lib/config/logger.js';
import { createHarvestActivities } from './harvest/index.js';
import { createIntakeActivities } from './intake/index.js';
import { createAuditStore } from './audit.js';

/** What activities are built from: created once per worker process. */
export interface ActivityDeps {
  config: Config;
  pool: Pool;
  log: Logger;
}

/** Every activity the workflows can call, bound to their dependencies. */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createAuditStore(deps.pool),
    ...createIntakeActivities(deps),
    ...createHarvestActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
