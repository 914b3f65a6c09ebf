import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { SEARCH_ATTRIBUTES } from '../lib/domain/search-attributes.js';

/**
 * Finds or builds the `temporal` CLI and runs its dev server. The binary is
 * cached outside the repository so a clean clone (and CI) builds it once per
 * machine, not once per checkout.
 */

export const TEMPORAL_CLI_VERSION = 'v1.5.1';
const GO_PACKAGE = `github.com/temporalio/cli/cmd/temporal@${TEMPORAL_CLI_VERSION}`;

export function temporalCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.PROSPECTOR_CACHE_DIR ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'prospector');
  return path.join(base, `temporal-${TEMPORAL_CLI_VERSION}`);
}

export class TemporalCliMissingError extends Error {}

const HOW_TO_GET_IT = [
  'The Temporal CLI was not found. Any one of these fixes it:',
  '  - put `temporal` on PATH (https://docs.temporal.io/cli#install), or',
  '  - set TEMPORAL_CLI_PATH to the binary, or',
  `  - install Go and run: GOTOOLCHAIN=local go install ${GO_PACKAGE}`,
  '  - or point TEMPORAL_ADDRESS at a running Temporal server.',
].join('\n');

function isExecutable(file: string): boolean {
  try {
    return statSync(file).isFile() && (statSync(file).mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

function onPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, name))) return path.join(dir, name);
  }
  return undefined;
}

export interface FindOptions {
  cliPath?: string;
  env?: NodeJS.ProcessEnv;
  /** Build with Go when nothing is found (default true). */
  build?: boolean;
  onProgress?: (message: string) => void;
}

export async function findTemporalCli(options: FindOptions = {}): Promise<string> {
  const env = options.env ?? process.env;
  const explicit = options.cliPath ?? env.TEMPORAL_CLI_PATH;
  if (explicit) {
    if (isExecutable(explicit)) return explicit;
    throw new TemporalCliMissingError(`TEMPORAL_CLI_PATH=${explicit} is not an executable file.`);
  }
  const found = onPath('temporal', env);
  if (found) return found;
  const cached = path.join(temporalCacheDir(env), 'temporal');
  if (isExecutable(cached)) return cached;
  if (options.build === false || !onPath('go', env)) throw new TemporalCliMissingError(HOW_TO_GET_IT);
  await buildTemporalCli(temporalCacheDir(env), env, options.onProgress);
  if (isExecutable(cached)) return cached;
  throw new TemporalCliMissingError(`go install finished but ${cached} is missing.\n${HOW_TO_GET_IT}`);
}

/** One build at a time per machine: a lock directory guards concurrent starts. */
async function buildTemporalCli(dir: string, env: NodeJS.ProcessEnv, onProgress?: (m: string) => void) {
  mkdirSync(dir, { recursive: true });
  const lock = path.join(dir, '.building');
  const deadline = Date.now() + 20 * 60_000;
  while (true) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (isExecutable(path.join(dir, 'temporal'))) return;
      // A lock older than the deadline is from a build that died.
      if (Date.now() - statSync(lock).mtimeMs > 20 * 60_000) rmSync(lock, { recursive: true, force: true });
      if (Date.now() > deadline) throw new TemporalCliMissingError(`timed out waiting for another build (${lock})`);
      await sleep(2_000);
    }
  }
  try {
    if (isExecutable(path.join(dir, 'temporal'))) return;
    onProgress?.(`Building the Temporal CLI ${TEMPORAL_CLI_VERSION} once into ${dir} (a few minutes)...`);
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn('go', ['install', GO_PACKAGE], {
        env: { ...env, GOTOOLCHAIN: 'local', GOBIN: dir, GOFLAGS: env.GOFLAGS ?? '' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
      child.on('close', (code) => resolve({ code, stderr }));
    });
    if (result.code !== 0) {
      throw new TemporalCliMissingError(`go install ${GO_PACKAGE} failed (exit ${result.code}):\n${result.stderr}\n${HOW_TO_GET_IT}`);
    }
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

export interface DevServerOptions {
  binary: string;
  port: number;
  uiPort?: number;
  /** SQLite file for persistence across restarts; omitted = in memory. */
  dbFile?: string;
  /** e.g. journal_mode=wal, synchronous=normal. */
  sqlitePragmas?: string[];
  headless?: boolean;
  /** The codec endpoint the Web UI decodes payloads through (api/routes/codec.ts). */
  uiCodecEndpoint?: string;
  namespace?: string;
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  readyTimeoutMs?: number;
  onOutput?: (line: string) => void;
}

export interface DevServer {
  address: string;
  uiUrl?: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

export function devServerArgs(o: DevServerOptions): string[] {
  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(o.port), '--log-level', o.logLevel ?? 'error'];
  if (o.headless) args.push('--headless');
  else args.push('--ui-port', String(o.uiPort ?? o.port + 1000));
  if (!o.headless && o.uiCodecEndpoint) args.push('--ui-codec-endpoint', o.uiCodecEndpoint);
  if (o.dbFile) args.push('--db-filename', o.dbFile);
  for (const pragma of o.sqlitePragmas ?? []) args.push('--sqlite-pragma', pragma);
  if (o.namespace && o.namespace !== 'default') args.push('--namespace', o.namespace);
  for (const key of SEARCH_ATTRIBUTES) args.push('--search-attribute', `${key.name}=Keyword`);
  return args;
}

export async function startTemporalDevServer(o: DevServerOptions): Promise<DevServer> {
  if (o.dbFile) mkdirSync(path.dirname(o.dbFile), { recursive: true });
  const child = spawn(o.binary, devServerArgs(o), { stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  const collect = (d: Buffer) => {
    const text = d.toString();
    tail = (tail + text).slice(-4000);
    for (const line of text.split('\n')) if (line.trim()) o.onOutput?.(line);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const address = `127.0.0.1:${o.port}`;
  const uiUrl = o.headless ? undefined : `http://127.0.0.1:${o.uiPort ?? o.port + 1000}`;
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };

  const ready = waitForTemporal(address, o.namespace ?? 'default', o.readyTimeoutMs ?? 60_000, uiUrl);
  const outcome = await Promise.race([ready.then(() => 'ready' as const), exited.then((code) => code)]);
  if (outcome !== 'ready') {
    throw new Error(`temporal dev server exited (code ${outcome}) before it was ready:\n${tail}`);
  }
  return { address, uiUrl, process: child, stop };
}

/**
 * Ready means: the frontend answers, the namespace is registered and, when the
 * UI runs, it serves HTTP. Polled, not slept.
 */
export async function waitForTemporal(address: string, namespace: string, timeoutMs: number, uiUrl?: string) {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const connection = await Connection.connect({ address, connectTimeout: '2s' });
      try {
        await connection.workflowService.describeNamespace({ namespace });
      } finally {
        await connection.close();
      }
      if (uiUrl) {
        const res = await fetch(uiUrl, { signal: AbortSignal.timeout(2_000) });
        if (!res.ok) throw new Error(`Temporal UI answered ${res.status}`);
      }
      return;
    } catch (err) {
      lastError = err;
      await sleep(250);
    }
  }
  throw new Error(`Temporal at ${address} not ready after ${timeoutMs} ms: ${(lastError as Error)?.message}`);
}

/** For `doctor`: the version a binary reports. */
export function temporalCliVersion(binary: string): string | undefined {
  const out = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  return out.status === 0 ? out.stdout.trim() : undefined;
}

