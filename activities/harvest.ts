import type { ActivityDeps } from './index.js';

// Placeholder: the signal harvest activities are created here.
export function createHarvestActivities(_deps: ActivityDeps) {
  return {};
}
