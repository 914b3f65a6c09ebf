import type { ApiDeps } from '../deps.js';
import type { AnyRoute } from '../route.js';

// Placeholder: the signals routes are declared here.
export function signalRoutes(_deps: ApiDeps): AnyRoute[] {
  return [];
}
