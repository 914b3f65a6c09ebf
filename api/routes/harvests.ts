import type { ApiDeps } from '../deps.js';
import type { AnyRoute } from '../route.js';

// Placeholder: the harvests routes are declared here.
export function harvestRoutes(_deps: ApiDeps): AnyRoute[] {
  return [];
}
