import type { Config } from '../lib/config.js';
import type { Pool } from '../lib/db.js';
import type { Logger } from '../lib/logger.js';
import { createHarvestActivities } from './harvest.js';
import { createIntakeActivities } from './intake.js';
import { createAuditStore } from './store.js';

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
