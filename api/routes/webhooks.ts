import type { ApiDeps } from '../deps.js';
import type { AnyRoute } from '../route.js';

// Placeholder: the webhooks routes are declared here.
export function webhookRoutes(_deps: ApiDeps): AnyRoute[] {
  return [];
}
