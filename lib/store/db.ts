import path from 'node:path';
import pg from 'pg';
import { runner } from 'node-pg-migrate';
import type { Logger } from '../config/logger.js';
import { ROOT } from '../config/paths.js';

export type Pool = pg.Pool;

export const MIGRATIONS_DIR = path.join(ROOT, 'infra/migrations');

export function createPool(url: string, max = 10): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max,
    connectionTimeoutMillis: 3_000,
    idleTimeoutMillis: 30_000,
    // A query that cannot finish in time is a failure to report, not to wait on.
    statement_timeout: 15_000,
  });
  // An idle client losing its server (PostgreSQL restarted) must not crash the process.
  pool.on('error', () => undefined);
  return pool;
}

/**
 * A small pool on the same database whose commits do not wait for their WAL
 * flush: for writes that are safe to lose in a PostgreSQL crash (counters,
 * leases), so they neither wait on the disk nor hold locks through its flushes.
 */
export function asyncCommitPool(pool: pg.Pool, max: number): pg.Pool {
  const fast = new pg.Pool({ ...pool.options, max, options: '-c synchronous_commit=off' } as pg.PoolConfig);
  // As in createPool: an idle client losing its server must not crash the process.
  fast.on('error', () => undefined);
  return fast;
}

/** Runs `work` in one transaction on one client: committed when it returns, rolled back when it throws. */
export async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/**
 * Applies pending migrations. Safe to call from every process at start:
 * node-pg-migrate takes an advisory lock, and applied files are skipped.
 */
export async function migrate(url: string, log?: Logger, waitMs = 60_000): Promise<string[]> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      return await migrateOnce(url, log);
    } catch (err) {
      // Another process holds the migration lock: it is doing our work; wait for it.
      if (!/Another migration is already running/.test((err as Error).message) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function migrateOnce(url: string, log?: Logger): Promise<string[]> {
  const applied = await runner({
    databaseUrl: url,
    dir: MIGRATIONS_DIR,
    direction: 'up',
    migrationsTable: 'pgmigrations',
    checkOrder: true,
    singleTransaction: true,
    log: (msg: string) => log?.debug({ migration: msg }, 'migration'),
  });
  const names = applied.map((m) => m.name);
  if (names.length > 0) log?.info({ applied: names }, 'database migrated');
  return names;
}
