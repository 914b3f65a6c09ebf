import type { ApiDeps } from '../deps.js';
import type { AnyRoute } from '../route.js';

// Placeholder: the keys routes are declared here.
export function keyRoutes(_deps: ApiDeps): AnyRoute[] {
  return [];
}
