import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import getPort from 'get-port';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { ROOT } from '../../lib/paths.js';

/**
 * The README's run command, for real: the supervisor brings up Temporal,
 * PostgreSQL, the sandbox, the worker and the API on free ports with its data
 * in a temporary DATA_DIR; it is stopped with SIGINT (Ctrl-C) and started
 * again on the same data.
 */

/** Child output quoted so the runner does not read its stack traces as ours. */
function indent(text: string): string {
  return text.split('\n').map((l) => `  > ${l.replace(/\bat /g, 'at: ')}`).join('\n');
}

interface Stack {
  proc: ChildProcess;
  output: () => string;
}

describe('the dev stack (npm start)', () => {
  let dataDir: string;
  let env: NodeJS.ProcessEnv;
  let ports: Record<string, number>;
  let stack: Stack | undefined;
  const workflowId = `stack-smoke-${Date.now()}`;

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'prospector-stack-'));
    chmodSync(dataDir, 0o755);
    const [api, temporal, ui, sandbox, pgPort, metrics] = await Promise.all([getPort(), getPort(), getPort(), getPort(), getPort(), getPort()]);
    ports = { api, temporal, ui, sandbox, pg: pgPort, metrics };
    env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      DATA_DIR: dataDir,
      PORT: String(api),
      TEMPORAL_ADDRESS: `localhost:${temporal}`,
      TEMPORAL_UI_PORT: String(ui),
      SANDBOX_PORT: String(sandbox),
      SANDBOX_URL: `http://127.0.0.1:${sandbox}`,
      EMBEDDED_PG_PORT: String(pgPort),
      WORKER_METRICS_PORT: String(metrics),
      WORKER_SHUTDOWN_GRACE: '10s',
      ACTIVITY_TIMEOUT: '5s',
      LOG_LEVEL: 'warn',
    };
  });

  afterAll(async () => {
    if (stack && stack.proc.exitCode === null) await stopStack(stack);
    rmSync(dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  });

  async function startStack(): Promise<Stack> {
    const proc = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'infra/dev/up.ts')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout!.on('data', (d) => (out += d));
    proc.stderr!.on('data', (d) => (out += d));
    const deadline = Date.now() + 150_000;
    while (!out.includes('Prospector is up.')) {
      if (proc.exitCode !== null) throw new Error(`stack exited ${proc.exitCode}; its output:\n${indent(out)}`);
      if (Date.now() > deadline) throw new Error(`stack not up in time; its output:\n${indent(out)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    return { proc, output: () => out };
  }

  async function stopStack(s: Stack): Promise<number | null> {
    s.proc.kill('SIGINT');
    return new Promise((resolve) => (s.proc.exitCode !== null ? resolve(s.proc.exitCode) : s.proc.once('exit', (code) => resolve(code))));
  }

  /** Every process that belongs to this stack: by its environment or its command line. */
  function stackProcesses(): string[] {
    const found: string[] = [];
    for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      try {
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
        const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
        if (cmd.includes(dataDir) || environ.includes(`DATA_DIR=${dataDir}\0`)) found.push(`${pid}: ${cmd.slice(0, 120)}`);
      } catch {
        /* gone or not ours to read */
      }
    }
    return found;
  }

  const api = (p: string) => fetch(`http://127.0.0.1:${ports.api}${p}`);
  const stackInfo = () => JSON.parse(readFileSync(path.join(dataDir, 'stack.json'), 'utf8')) as { databaseUrl: string };

  async function readyzStatus(want: number): Promise<{ status: number; body: any }> {
    let last = { status: 0, body: undefined as any };
    for (let i = 0; i < 100; i++) {
      const res = await api('/readyz');
      last = { status: res.status, body: await res.json() };
      if (last.status === want) return last;
      await new Promise((r) => setTimeout(r, 200));
    }
    return last;
  }

  function runDb(action: 'stop' | 'start') {
    const out = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'infra/dev/db.ts'), action], { cwd: ROOT, env, encoding: 'utf8', timeout: 60_000 });
    expect(out.status, indent(out.stderr)).toBe(0);
  }

  it('comes up with every part answering, survives a database restart, stops cleanly and keeps its state', async () => {
    stack = await startStack();
    expect(stack.output()).toContain(`http://localhost:${ports.ui}`);

    expect((await api('/healthz')).status).toBe(200);
    expect((await readyzStatus(200)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${ports.ui}/`)).status).toBe(200);
    expect(await (await fetch(`http://127.0.0.1:${ports.sandbox}/_sandbox/health`)).json()).toMatchObject({ ok: true });
    expect((await fetch(`http://127.0.0.1:${ports.metrics}/metrics`)).status).toBe(200);

    // A workflow through the stack's own worker, writing to the stack's database.
    const connection = await Connection.connect({ address: `127.0.0.1:${ports.temporal}` });
    const client = new Client({ connection });
    const result = await client.workflow.execute('smokeTest', { taskQueue: 'prospecting', workflowId, args: ['first run'] });
    expect(result).toEqual({ workflowId, note: 'first run' });
    await connection.close();

    // The operator's doctor reaches every dependency of the running stack (the database through stack.json).
    const doctor = spawnSync(process.execPath, [path.join(ROOT, 'bin/prospector.js'), 'doctor', '--json'], { cwd: ROOT, env, encoding: 'utf8', timeout: 60_000 });
    expect(doctor.status, indent(doctor.stdout + doctor.stderr)).toBe(0);
    const report = JSON.parse(doctor.stdout) as { ok: boolean; checks: { name: string; ok: boolean }[] };
    expect(report.checks.map((c) => [c.name, c.ok])).toEqual([
      ['Temporal', true], ['PostgreSQL', true], ['Google (Gmail, Calendar)', true], ['HubSpot', true], ['OpenAI', true], ['Slack', true], ['X API', true],
    ]);

    // PostgreSQL stopped: readiness names it; started again: ready, with no API restart.
    runDb('stop');
    const down = await readyzStatus(503);
    expect(down.status).toBe(503);
    expect(down.body.down).toEqual(['postgres']);
    expect(down.body.detail).toContain('PostgreSQL');
    const doctorDown = spawnSync(process.execPath, [path.join(ROOT, 'bin/prospector.js'), 'doctor'], { cwd: ROOT, env, encoding: 'utf8', timeout: 60_000 });
    expect(doctorDown.status).toBe(1);
    expect(doctorDown.stdout).toMatch(/FAIL\s+PostgreSQL/);
    runDb('start');
    expect((await readyzStatus(200)).status).toBe(200);
    expect(stack.output()).not.toMatch(/api +\| .*restarting/);

    expect(await stopStack(stack)).toBe(0);
    expect(stackProcesses()).toEqual([]);
    expect(existsSync(path.join(dataDir, 'stack.json'))).toBe(false);

    // Second run on the same data: the first run's history and rows are there.
    stack = await startStack();
    const connection2 = await Connection.connect({ address: `127.0.0.1:${ports.temporal}` });
    const handle = new Client({ connection: connection2 }).workflow.getHandle(workflowId);
    expect((await handle.describe()).status.name).toBe('COMPLETED');
    expect(await handle.result()).toEqual({ workflowId, note: 'first run' });
    await connection2.close();
    const db = new pg.Client({ connectionString: stackInfo().databaseUrl });
    await db.connect();
    const { rows } = await db.query('SELECT details FROM audit_events WHERE workflow_id = $1', [workflowId]);
    await db.end();
    expect(rows).toEqual([{ details: { note: 'first run' } }]);

    expect(await stopStack(stack)).toBe(0);
    expect(stackProcesses()).toEqual([]);
  }, 420_000);
});
