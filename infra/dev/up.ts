import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { prettyFactory } from 'pino-pretty';
import { loadConfigOrExit, type Config } from '../../lib/config/config.js';
import { ensureDevApiKey } from '../../lib/store/api-keys.js';
import { createPool, migrate } from '../../lib/store/db.js';
import { startNodeProcess, type ManagedProcess } from './process.js';

/**
 * `npm start`: the whole stack on one machine. Temporal dev server and an
 * embedded PostgreSQL (both persisting under DATA_DIR), the provider sandbox
 * when any provider lacks credentials, then the worker and the API. Ctrl-C
 * stops everything in reverse order.
 */
const config = await loadConfigOrExit();
mkdirSync(config.dataDir, { recursive: true });

const pretty = prettyFactory({ colorize: process.stdout.isTTY, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname,service' });
const pad = Math.max(...['temporal', 'postgres', 'sandbox', 'worker', 'api'].map((n) => n.length));
function print(name: string, line: string) {
  let text = line;
  if (line.startsWith('{')) {
    try {
      text = pretty(JSON.parse(line)).trimEnd();
    } catch {
      /* not JSON after all */
    }
  }
  process.stdout.write(`${name.padEnd(pad)} | ${text}\n`);
}

const localTemporal = /^(localhost|127\.0\.0\.1):\d+$/.test(config.temporal.address) && !config.temporal.tls;
const needsSandbox = Object.values(config.providers).some((p) => p.mode === 'sandbox');
const running: ManagedProcess[] = [];
let stopping = false;

function start(name: string, args: string[], env: NodeJS.ProcessEnv = {}): ManagedProcess {
  const proc = startNodeProcess(name, args, { ...process.env, ...env }, print);
  running.push(proc);
  void proc.exited.then((code) => {
    running.splice(running.indexOf(proc), 1);
    if (!stopping) onUnexpectedExit(name, args, env, code);
  });
  return proc;
}

// A crashed piece is restarted with backoff; one that keeps crashing stops the stack.
const restarts = new Map<string, number[]>();
function onUnexpectedExit(name: string, args: string[], env: NodeJS.ProcessEnv, code: number | null) {
  const recent = (restarts.get(name) ?? []).filter((t) => Date.now() - t < 60_000);
  if (recent.length >= 5) {
    print('stack', `${name} exited (code ${code}) 5 times in a minute; stopping`);
    void shutdown(1);
    return;
  }
  restarts.set(name, [...recent, Date.now()]);
  const delay = 500 * 2 ** recent.length;
  print('stack', `${name} exited (code ${code}); restarting in ${delay} ms`);
  setTimeout(() => !stopping && start(name, args, env), delay);
}

async function shutdown(code = 0) {
  if (stopping) return;
  stopping = true;
  print('stack', 'stopping...');
  const byName = (n: string) => running.filter((p) => p.name === n);
  const grace = config.worker.shutdownGraceMs + 5_000;
  for (const tier of [['api'], ['worker'], ['sandbox'], ['postgres', 'temporal']]) {
    await Promise.all(tier.flatMap(byName).map((p) => p.stop(grace)));
  }
  rmSync(stackFile(config), { force: true });
  print('stack', 'stopped');
  process.exit(code);
}
process.on('SIGINT', () => void shutdown());
process.on('SIGTERM', () => void shutdown());
process.on('SIGHUP', () => void shutdown());

try {
  const infra: Promise<Record<string, unknown>>[] = [];
  const temporal = localTemporal ? start('temporal', ['infra/dev/service.ts', 'temporal']) : undefined;
  if (temporal) infra.push(temporal.ready);
  const postgres = config.database.url ? undefined : start('postgres', ['infra/dev/service.ts', 'postgres']);
  if (postgres) infra.push(postgres.ready);
  const sandbox = needsSandbox ? start('sandbox', ['sandbox/main.ts']) : undefined;
  await Promise.all(infra);
  const databaseUrl = config.database.url ?? ((await postgres!.ready).url as string);

  // Migrate once here so the worker and the API do not race for the lock.
  await migrate(databaseUrl);
  const devKey = config.env === 'development' ? await withPool(databaseUrl, (pool) => ensureDevApiKey(pool, config.dataDir)) : undefined;
  const appEnv = { DATABASE_URL: databaseUrl };
  const worker = start('worker', ['workers/main.ts'], appEnv);
  start('api', ['api/main.ts'], appEnv);
  await Promise.all([worker.ready, waitForReady(config)]);
  if (sandbox) await waitForHttp(`${config.sandbox.url}/_sandbox/health`);
  writeStackFile(config, databaseUrl);
  printBanner(config, { sandbox: Boolean(sandbox), temporal: Boolean(temporal), devKey });
} catch (err) {
  print('stack', `failed to start: ${(err as Error).message}`);
  await shutdown(1);
}

async function waitForHttp(url: string, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(url, { signal: AbortSignal.timeout(2_000) })).ok) return;
    } catch {
      /* not up yet */
    }
    await sleep(250);
  }
  throw new Error(`${url} did not answer within ${timeoutMs / 1000} s`);
}

function waitForReady(cfg: Config) {
  return waitForHttp(`http://127.0.0.1:${cfg.api.port}/readyz`);
}

async function withPool<T>(url: string, fn: (pool: ReturnType<typeof createPool>) => Promise<T>): Promise<T> {
  const pool = createPool(url, 1);
  try {
    return await fn(pool);
  } finally {
    await pool.end();
  }
}

function printBanner(cfg: Config, parts: { sandbox: boolean; temporal: boolean; devKey?: { key: string; created: boolean; file: string } }) {
  const key = parts.devKey;
  const lines = [
    '',
    'Prospector is up.',
    `  API          ${cfg.api.publicUrl}   (GET /healthz, GET /readyz)`,
    `  Temporal UI  ${parts.temporal ? cfg.temporal.uiUrl : `(external: ${cfg.temporal.address})`}`,
    parts.sandbox ? `  Sandbox      ${cfg.sandbox.url}   (providers without credentials; state at /_sandbox/state)` : '  Sandbox      (not needed: every provider has credentials)',
    key ? (key.created ? `  API key      ${key.key}   (admin, shown once; saved to ${key.file})` : `  API key      in ${key.file} (admin)`) : '  API key      (create one: npx prospector keys create)',
    `  Data         ${cfg.dataDir}`,
    'Press Ctrl-C to stop.',
    '',
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

/** Where the running stack's addresses are written, so the CLI can find them (removed on stop). */
function stackFile(cfg: Config) {
  return path.join(cfg.dataDir, 'stack.json');
}

function writeStackFile(cfg: Config, databaseUrl: string) {
  const info = { pid: process.pid, apiUrl: `http://127.0.0.1:${cfg.api.port}`, databaseUrl, temporalAddress: cfg.temporal.address, temporalUiUrl: cfg.temporal.uiUrl, sandboxUrl: cfg.sandbox.url };
  writeFileSync(stackFile(cfg), JSON.stringify(info, null, 2), { mode: 0o600 });
}
