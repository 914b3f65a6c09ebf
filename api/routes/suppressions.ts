import type { ApiDeps } from '../deps.js';
import type { AnyRoute } from '../route.js';

// Placeholder: the suppressions routes are declared here.
export function suppressionRoutes(_deps: ApiDeps): AnyRoute[] {
  return [];
}
