import type { ActivityDeps } from './deps.js';
import { createHarvestActivities } from './harvest/index.js';
import { createIntakeActivities } from './intake/index.js';
import { createAuditStore } from './audit.js';

export type { ActivityDeps };

/** Every activity the workflows can call, bound to their dependencies. */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createAuditStore(deps.pool),
    ...createIntakeActivities(deps),
    ...createHarvestActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
