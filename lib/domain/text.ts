/**
 * PostgreSQL text and jsonb cannot hold NUL characters. The API refuses them
 * in any request (api/route.ts); text that reaches an intake another way (the
 * HubSpot webhook, a harvest, a raw Temporal start) has them removed.
 */

export function hasNul(text: string): boolean {
  return text.includes('\u0000');
}

export function withoutNul(text: string): string {
  return text.replace(/\u0000/g, '');
}

/** Every string field of a flat record without NUL characters. */
export function fieldsWithoutNul<T extends object>(record: T): T {
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, typeof v === 'string' ? withoutNul(v) : v])) as T;
}
