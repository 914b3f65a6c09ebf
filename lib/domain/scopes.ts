/**
 * What an API key may do. Keys (lib/store/api-keys.ts) carry these; each
 * route (api/route.ts) names the one it needs; `admin` implies every other.
 * `payloads:decode` reads any Temporal payload in clear through the codec
 * endpoint (api/routes/codec.ts): every intake's notes, email threads and
 * drafts at once, more than `prospects:read` shows, so it is granted apart.
 */
export const SCOPES = ['prospects:read', 'prospects:write', 'approvals:write', 'harvest:write', 'signals:read', 'payloads:decode', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

/** A scope list grants `needed` when it holds it or `admin`. */
export function grants(scopes: readonly Scope[], needed: Scope): boolean {
  return scopes.includes('admin') || scopes.includes(needed);
}
