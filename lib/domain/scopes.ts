/**
 * What an API key may do. Keys (lib/store/api-keys.ts) carry these; each
 * route (api/route.ts) names the one it needs; `admin` implies every other.
 */
export const SCOPES = ['prospects:read', 'prospects:write', 'approvals:write', 'harvest:write', 'signals:read', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

/** A scope list grants `needed` when it holds it or `admin`. */
export function grants(scopes: readonly Scope[], needed: Scope): boolean {
  return scopes.includes('admin') || scopes.includes(needed);
}
