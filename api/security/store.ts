import { ApiKeyStore } from '../../lib/store/api-keys.js';
import type { ApiDeps } from '../deps.js';

/**
 * The key store an app's security layer uses, shared with the admin routes so a
 * revoke through the API drops the key from this replica's cache at once.
 */
const byDeps = new WeakMap<ApiDeps, ApiKeyStore>();
const byPool = new WeakMap<ApiDeps['pool'], ApiKeyStore>();

export function registerKeyStore(deps: ApiDeps, store: ApiKeyStore): void {
  byDeps.set(deps, store);
  byPool.set(deps.pool, store);
}

/** The registered store, or one made from the loaded configuration when routes run without createSecurity. */
export async function keyStoreFor(deps: ApiDeps): Promise<ApiKeyStore> {
  const found = byDeps.get(deps) ?? byPool.get(deps.pool);
  if (found) return found;
  const store = ApiKeyStore.fromSecurity(deps.pool, deps.config.security);
  registerKeyStore(deps, store);
  return store;
}
