import type { ApiDeps } from '../deps.js';
import type { AnyRoute } from '../route.js';

// Placeholder: the prospects routes are declared here.
export function prospectRoutes(_deps: ApiDeps): AnyRoute[] {
  return [];
}
