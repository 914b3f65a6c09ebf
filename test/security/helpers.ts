import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Server } from 'node:http';
import { Writable } from 'node:stream';
import getPort from 'get-port';
import type { Client } from '@temporalio/client';
import { createApp } from '../../api/app.js';
import type { ApiDeps } from '../../api/deps.js';
import type { AnyRoute } from '../../api/route.js';
import { allRoutes } from '../../api/routes/index.js';
import { createSecurity, type SecurityInternals } from '../../api/security/index.js';
import type { ContractViolation } from '../../api/security/contract.js';
import { loadConfig } from '../../lib/config/config.js';
import { createPool, type Pool } from '../../lib/store/db.js';
import { createLogger } from '../../lib/config/logger.js';
import { loadSecurityConfig } from '../../lib/config/security.js';

/** Every log line a test's apps wrote, to grep for secrets. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: string, done: () => void) {
    this.lines.push(chunk.toString('utf8'));
    done();
  }
  text(): string {
    return this.lines.join('');
  }
}

export interface TestApi {
  url: string;
  deps: ApiDeps;
  security: SecurityInternals;
  routes: AnyRoute[];
  violations: ContractViolation[];
  close(): Promise<void>;
}

export interface TestApiOptions {
  databaseUrl: string;
  temporal: Client;
  /** Security and config settings (RATE_LIMIT_*, REDIS_URL, CORS_ORIGINS, API_BODY_LIMIT …). */
  settings?: Record<string, string>;
  now?: () => Date;
  logs?: LogCapture;
  /** A pool of its own, like a separate API replica (default true). */
  ownPool?: boolean;
  pool?: Pool;
  /** How often the security layer's pruning runs (default: every 5 minutes). */
  pruneEveryMs?: number;
}

/**
 * The API exactly as buildApi assembles it (createSecurity + allRoutes +
 * createApp), with test hooks: an injectable clock, settings, log capture and
 * the response-contract check on.
 */
export async function startTestApi(o: TestApiOptions): Promise<TestApi> {
  const isolation = isolateSideEffects();
  const settings = { PROSPECTOR_ENV: 'test', ...o.settings };
  const config = await loadConfig({ env: {}, overrides: { ...isolation, ...settings, DATABASE_URL: o.databaseUrl } });
  const log = createLogger({ name: 'api-test', level: 'trace', destination: o.logs ?? new LogCapture() });
  const pool = o.pool ?? createPool(o.databaseUrl, 5);
  const deps: ApiDeps = { config, pool, temporal: o.temporal, log };
  const violations: ContractViolation[] = [];
  const security = await createSecurity(deps, {
    settings: await loadSecurityConfig({ env: {}, overrides: settings }),
    now: o.now,
    onContractViolation: (v) => violations.push(v),
    pruneEveryMs: o.pruneEveryMs,
  });
  const routes = allRoutes(deps);
  const app = createApp({ ...deps, routes, routeMiddleware: security.middleware, checks: security.checks, extras: security.extras });
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    deps,
    security,
    routes,
    violations,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await security.close();
      if (!o.pool) await pool.end();
    },
  };
}

/**
 * These tests call every route with valid keys, so handlers run: schedules and
 * workflows they touch get ids and task queues of this test process only, never
 * the shared defaults other test files (or their workers) use. Route modules
 * read these settings from the loaded configuration, so they are returned for
 * it; the environment gets them too, for whatever this process loads from there.
 */
export function isolateSideEffects(): Record<string, string> {
  const tag = `sec-${process.pid}`;
  const settings: Record<string, string> = {
    HARVEST_SCHEDULE_ID: `${tag}-harvest`,
    HARVEST_TASK_QUEUE: `${tag}-harvest`,
    HARVEST_INTAKE_TASK_QUEUE: `${tag}-intake`,
    INTAKE_TASK_QUEUE: `${tag}-intake`,
  };
  for (const [name, value] of Object.entries(settings)) settings[name] = process.env[name] ??= value;
  return settings;
}

export interface RedisServer {
  url: string;
  stop(): Promise<void>;
}

/** A real redis-server (Debian's package) on a free port, nothing persisted. */
export async function startRedis(): Promise<RedisServer> {
  const binary = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((p) => existsSync(p)) ?? 'redis-server';
  const port = await getPort();
  const proc: ChildProcess = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 10_000);
    proc.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run redis-server (${err.message}); install it: apt-get install -y redis-server`));
    });
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (/ready to accept connections/i.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

/** A request that satisfies a route's path pattern (values may not exist; that is fine for auth checks). */
export function samplePath(route: AnyRoute, value = 'key_000000000000'): string {
  return `/v1${route.path.replace(/:([A-Za-z0-9_]+)/g, () => encodeURIComponent(value))}`;
}

export async function call(
  base: string,
  method: string,
  path: string,
  options: { key?: string; header?: 'authorization' | 'x-api-key'; body?: unknown; rawBody?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Headers; body: any; text: string }> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.key !== undefined) {
    if (options.header === 'x-api-key') headers['x-api-key'] = options.key;
    else headers.authorization = `Bearer ${options.key}`;
  }
  let body: string | undefined;
  if (options.rawBody !== undefined) body = options.rawBody;
  else if (options.body !== undefined && method.toUpperCase() !== 'GET') body = JSON.stringify(options.body);
  if (body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, { method: method.toUpperCase(), headers, body, signal: AbortSignal.timeout(20_000) });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = text;
  }
  return { status: res.status, headers: res.headers, body: parsed, text };
}

export const keyedRoutes = (routes: AnyRoute[]) => routes.filter((r) => typeof r.auth === 'object');
