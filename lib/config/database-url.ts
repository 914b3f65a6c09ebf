import type { Config } from './config.js';

/**
 * The database the processes use. The dev supervisor starts an embedded
 * PostgreSQL and passes its URL as DATABASE_URL; a bare process without one is
 * a configuration mistake worth naming.
 */
export function resolveDatabaseUrl(config: Config): string {
  if (config.database.url) return config.database.url;
  throw new Error(
    'DATABASE_URL is not set. Start the whole stack with `npm start` (it runs an embedded PostgreSQL), or set DATABASE_URL.',
  );
}
