import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import getPort, { portNumbers } from 'get-port';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { ROOT } from '../../lib/config/paths.js';
import { payloadKeysFrom } from '../../lib/config/payload-keys.js';
import { dataConverterFor } from '../../lib/config/temporal.js';

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
  /** The stack encrypts Temporal payloads with the key `npm start` made in DATA_DIR; a client of it needs the same. */
  const stackDataConverter = (): DataConverter => dataConverterFor({ payloadKeys: payloadKeysFrom({ production: false, dataDir }) });

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'prospector-stack-'));
    chmodSync(dataDir, 0o755);
    const [api, temporal, ui, sandbox, pgPort] = await Promise.all([getPort(), getPort(), getPort(), getPort(), getPort()]);
    // The intake worker serves metrics on this port and the harvest worker on the next one.
    const metrics = await getPort({ port: [...portNumbers(9500, 9990)].filter((p) => p % 2 === 0 && ![api, temporal, ui, sandbox, pgPort].includes(p + 1)) });
    ports = { api, temporal, ui, sandbox, pg: pgPort, metrics, harvestMetrics: metrics + 1 };
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
    // Two worker processes, the intake's and the harvest's, each with its own metrics.
    expect((await fetch(`http://127.0.0.1:${ports.metrics}/metrics`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${ports.harvestMetrics}/metrics`)).status).toBe(200);
    expect(stack.output()).toMatch(/Workers +intake-worker \(queue prospecting.*harvest-worker \(queue harvest/);

    // A workflow through the stack's own worker, writing to the stack's database, with the stack's payload key.
    const connection = await Connection.connect({ address: `127.0.0.1:${ports.temporal}` });
    const client = new Client({ connection, dataConverter: stackDataConverter() });
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

    // The README's "Using it", as written: a lead submitted with the dev key, decided by registered approvers.
    const key = readFileSync(path.join(dataDir, 'dev-api-key'), 'utf8').trim();
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    const submitLead = async (email: string, name: string) => {
      const res = await fetch(`http://127.0.0.1:${ports.api}/v1/prospects`, { method: 'POST', headers, body: JSON.stringify({ email, name, notes: 'Asked about pricing' }) });
      expect(res.status).toBe(202);
      return ((await res.json()) as { id: string }).id;
    };
    const prospect = async (id: string) => (await (await fetch(`http://127.0.0.1:${ports.api}/v1/prospects/${encodeURIComponent(id)}`, { headers })).json()) as { stage: string; decision: { by: string } | null };
    const untilStage = async (id: string, stage: string) => {
      for (let i = 0; i < 240 && (await prospect(id)).stage !== stage; i++) await new Promise((r) => setTimeout(r, 250));
      return prospect(id);
    };
    const cli = (...args: string[]) => spawnSync(process.execPath, [path.join(ROOT, 'bin/prospector.js'), ...args], { cwd: ROOT, env, encoding: 'utf8', timeout: 60_000 });
    const [dana, lee] = await Promise.all([submitLead('dana@acme.example', 'Dana Ruiz'), submitLead('lee@globex.example', 'Lee Park')]);
    expect((await untilStage(dana, 'AWAITING_APPROVAL')).stage).toBe('AWAITING_APPROVAL');
    expect((await untilStage(lee, 'AWAITING_APPROVAL')).stage).toBe('AWAITING_APPROVAL');
    const added = cli('approvers', 'add', 'ana@acme.example');
    expect(added.status, indent(added.stdout + added.stderr)).toBe(0);
    const signalled = spawnSync(
      inject('temporalBinary'),
      ['workflow', 'signal', '--address', `127.0.0.1:${ports.temporal}`, '--workflow-id', dana, '--name', 'approve', '--input', '{"version": 1, "approver": "ana@acme.example", "reason": "looks right"}'],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(signalled.status, indent(signalled.stdout + signalled.stderr)).toBe(0);
    expect(await untilStage(dana, 'APPROVED')).toMatchObject({ stage: 'APPROVED', decision: { by: 'ana@acme.example' } });
    const approved = cli('prospects', 'approve', lee, '--draft-version', '1');
    expect(approved.status, indent(approved.stdout + approved.stderr)).toBe(0);
    expect(await untilStage(lee, 'APPROVED')).toMatchObject({ stage: 'APPROVED', decision: { by: 'operator@prospector.example' } });

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
    const handle = new Client({ connection: connection2, dataConverter: stackDataConverter() }).workflow.getHandle(workflowId);
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
