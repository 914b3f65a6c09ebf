import type { ApiDeps } from '../deps.js';
import type { AnyRoute } from '../route.js';
import { approverRoutes } from './approvers.js';
import { codecRoutes } from './codec.js';
import { harvestRoutes } from './harvests.js';
import { keyRoutes } from './keys.js';
import { prospectRoutes } from './prospects.js';
import { signalRoutes } from './signals.js';
import { suppressionRoutes } from './suppressions.js';
import { webhookRoutes } from './webhooks.js';

/** Every /v1 route of the API, in one list (the OpenAPI document is made from it). */
export function allRoutes(deps: ApiDeps): AnyRoute[] {
  return [
    ...prospectRoutes(deps),
    ...webhookRoutes(deps),
    ...suppressionRoutes(deps),
    ...harvestRoutes(deps),
    ...signalRoutes(deps),
    ...keyRoutes(deps),
    ...approverRoutes(deps),
    ...codecRoutes(deps),
  ];
}
