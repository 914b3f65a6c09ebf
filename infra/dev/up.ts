import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { prettyFactory } from 'pino-pretty';
import { loadConfigOrExit, type Config } from '../../lib/config/config.js';
import { formatAllowList } from '../../lib/config/outbound.js';
import { parseAllowedHost, type AllowedHost } from '../../lib/domain/outbound.js';
import { ensureDevApiKey } from '../../lib/store/api-keys.js';
import { ensureDevPayloadKeys } from '../../lib/config/payload-keys.js';
import { createPool, migrate } from '../../lib/store/db.js';
import { startNodeProcess, type ManagedProcess } from './process.js';

/**
 * `npm start`: the whole stack on one machine. Temporal dev server and an
 * embedded PostgreSQL (both persisting under DATA_DIR), the provider sandbox
 * when any provider lacks credentials, then two workers (one for the intake
 * queue, one for the harvest queue, each with its own heap bound, so a
 * harvest that crashes or runs out of memory is restarted without touching
 * an intake or a send) and the API. Ctrl-C stops everything in reverse order.
 */
const config = await loadConfigOrExit();
mkdirSync(config.dataDir, { recursive: true });

const pretty = prettyFactory({ colorize: process.stdout.isTTY, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname,service' });
const pad = Math.max(...['temporal', 'postgres', 'sandbox', 'intake-worker', 'harvest-worker', 'api'].map((n) => n.length));
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

function start(name: string, args: string[], env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = []): ManagedProcess {
  const proc = startNodeProcess(name, args, { ...process.env, ...env }, print, nodeArgs);
  running.push(proc);
  void proc.exited.then((code) => {
    running.splice(running.indexOf(proc), 1);
    if (!stopping) onUnexpectedExit(name, args, env, nodeArgs, code);
  });
  return proc;
}

// A crashed piece is restarted with backoff; one that keeps crashing stops the stack.
const restarts = new Map<string, number[]>();
function onUnexpectedExit(name: string, args: string[], env: NodeJS.ProcessEnv, nodeArgs: string[], code: number | null) {
  const recent = (restarts.get(name) ?? []).filter((t) => Date.now() - t < 60_000);
  if (recent.length >= 5) {
    print('stack', `${name} exited (code ${code}) 5 times in a minute; stopping`);
    void shutdown(1);
    return;
  }
  restarts.set(name, [...recent, Date.now()]);
  const delay = 500 * 2 ** recent.length;
  print('stack', `${name} exited (code ${code}); restarting in ${delay} ms`);
  setTimeout(() => !stopping && start(name, args, env, nodeArgs), delay);
}

async function shutdown(code = 0) {
  if (stopping) return;
  stopping = true;
  print('stack', 'stopping...');
  const byName = (n: string) => running.filter((p) => p.name === n);
  const grace = config.worker.shutdownGraceMs + 5_000;
  for (const tier of [['api'], workerPlan(config).map((w) => w.name), ['sandbox'], ['postgres', 'temporal']]) {
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
  // Temporal payloads are encrypted; without PAYLOAD_KEYS the stack's processes share a key made once for DATA_DIR.
  const devPayloadKeys = !config.temporal.payloadKeys && config.env !== 'production' ? await ensureDevPayloadKeys(config.dataDir) : undefined;
  const appEnv = { DATABASE_URL: databaseUrl };
  // The feed fetcher refuses loopback unless allow-listed: the sandbox is named here, explicitly, for the dev stack only.
  const outboundEnv = sandbox ? { OUTBOUND_ALLOW_HOSTS: formatAllowList([...config.outbound.allowHosts, sandboxHost(config)]) } : {};
  const workers = workerPlan(config).map((w) =>
    start(w.name, ['workers/main.ts'], { ...appEnv, ...outboundEnv, WORKER_TASK_QUEUES: w.queue, WORKER_METRICS_PORT: String(w.metricsPort) }, [`--max-old-space-size=${config.worker.maxHeapMb}`]),
  );
  start('api', ['api/main.ts'], appEnv);
  await Promise.all([...workers.map((w) => w.ready), waitForReady(config)]);
  if (sandbox) await waitForHttp(`${config.sandbox.url}/_sandbox/health`);
  writeStackFile(config, databaseUrl);
  printBanner(config, { sandbox: Boolean(sandbox), temporal: Boolean(temporal), devKey, payloadKeyFile: devPayloadKeys?.file });
} catch (err) {
  print('stack', `failed to start: ${(err as Error).message}`);
  await shutdown(1);
}

/**
 * One worker process per task queue: the intake's on WORKER_METRICS_PORT, the
 * harvest's on the next port (0 turns both off), so their metrics never collide.
 */
function workerPlan(cfg: Config): { name: string; queue: string; metricsPort: number }[] {
  const next = (port: number) => (port > 0 ? port + 1 : 0);
  if (cfg.intake.taskQueue === cfg.harvest.taskQueue) return [{ name: 'intake-worker', queue: cfg.intake.taskQueue, metricsPort: cfg.worker.metricsPort }];
  return [
    { name: 'intake-worker', queue: cfg.intake.taskQueue, metricsPort: cfg.worker.metricsPort },
    { name: 'harvest-worker', queue: cfg.harvest.taskQueue, metricsPort: next(cfg.worker.metricsPort) },
  ];
}

function sandboxHost(cfg: Config): AllowedHost {
  const url = new URL(cfg.sandbox.url);
  return parseAllowedHost(`${url.hostname}:${url.port || (url.protocol === 'https:' ? 443 : 80)}`) as AllowedHost;
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

function printBanner(cfg: Config, parts: { sandbox: boolean; temporal: boolean; devKey?: { key: string; created: boolean; file: string }; payloadKeyFile?: string }) {
  const key = parts.devKey;
  const lines = [
    '',
    'Prospector is up.',
    `  API          ${cfg.api.publicUrl}   (GET /healthz, GET /readyz)`,
    `  Temporal UI  ${parts.temporal ? cfg.temporal.uiUrl : `(external: ${cfg.temporal.address})`}`,
    parts.sandbox ? `  Sandbox      ${cfg.sandbox.url}   (providers without credentials; state at /_sandbox/state)` : '  Sandbox      (not needed: every provider has credentials)',
    `  Workers      ${workerPlan(cfg).map((w) => `${w.name} (queue ${w.queue}${w.metricsPort ? `, metrics :${w.metricsPort}` : ''})`).join(', ')}`,
    key ? (key.created ? `  API key      ${key.key}   (admin, shown once; saved to ${key.file})` : `  API key      in ${key.file} (admin)`) : '  API key      (create one: npx prospector keys create)',
    `  Payloads     encrypted in Temporal (key ${parts.payloadKeyFile ? `in ${parts.payloadKeyFile}` : 'from PAYLOAD_KEYS'}); read them in the UI after signing in at ${cfg.api.publicUrl}/v1/codec/login`,
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
