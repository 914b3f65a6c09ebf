import type { ActivityDeps } from './index.js';

// Placeholder: the prospect intake activities are created here.
export function createIntakeActivities(_deps: ActivityDeps) {
  return {};
}
