import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../../lib/config/paths.js';
import type { HarvestInput, HarvestSummary, SourceQuery } from '../../lib/domain/harvest.js';
import type { Sandbox } from '../../sandbox/server.js';
import { HARVEST_WORKFLOW } from '../../workflows/harvest/messages.js';
import { MiB, startHostileFeeds, type HostileFeeds } from '../harvest/hostile-feeds.js';
import { TEST_PAYLOAD_KEYS } from '../helpers/payload-keys.js';
import { quietTemporalRuntime, testDatabase, testSandbox, testTemporal, uniqueTaskQueue } from '../helpers/stack.js';
import { writeWorkflowBundle } from '../workflow/fixtures/spawn-worker.js';
import { submit, uniqueLead } from '../workflow/intake-helpers.js';

/**
 * Intake and harvest in separate worker processes, as `npm start` and compose
 * run them: the production entry point (workers/main.ts) started twice with
 * WORKER_TASK_QUEUES and a heap bound, on the real Temporal server, PostgreSQL
 * and the sandbox. A harvest meeting hostile feeds (300 MiB, endless drip, a
 * redirect into loopback) is refused by the outbound policy without its
 * worker's memory growing, while an intake runs to AWAITING_APPROVAL on the
 * other worker; and a harvest worker whose heap does blow up (its size cap set
 * far above its heap on purpose) dies alone: intakes go on, and a restarted
 * harvest worker runs the next harvest. Results are read from PostgreSQL (the
 * read model, harvest_runs), not from Temporal payloads.
 */

interface WorkerProcess {
  proc: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Peak resident memory so far (VmHWM), in MiB. */
  peakRssMb(): number;
  stop(): Promise<void>;
}

describe('intake and harvest workers in separate processes', () => {
  let tmp: string;
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let sandbox: Sandbox;
  let feeds: HostileFeeds;
  let env: NodeJS.ProcessEnv;
  const intakeQueue = uniqueTaskQueue('iso-intake');
  const harvestQueue = uniqueTaskQueue('iso-harvest');
  const workers: WorkerProcess[] = [];
  let seq = 0;

  beforeAll(async () => {
    quietTemporalRuntime('ERROR');
    tmp = mkdtempSync(path.join(os.tmpdir(), 'isolation-'));
    const bundle = writeWorkflowBundle(path.join(tmp, 'workflows.js'));
    let sb;
    [db, temporal, sb, feeds] = await Promise.all([testDatabase(), testTemporal(), testSandbox(), startHostileFeeds()]);
    sandbox = sb.sandbox;
    env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      // The prebuilt bundle: a worker starts in seconds, not after a webpack build.
      NODE_ENV: 'production',
      WORKFLOW_BUNDLE_PATH: await bundle,
      DATA_DIR: tmp,
      LOG_LEVEL: 'error',
      DATABASE_URL: db.url,
      TEMPORAL_ADDRESS: temporal.address,
      SANDBOX_URL: sandbox.url,
      INTAKE_TASK_QUEUE: intakeQueue,
      HARVEST_TASK_QUEUE: harvestQueue,
      HARVEST_INTAKE_TASK_QUEUE: intakeQueue,
      HARVEST_SCHEDULE_ENABLED: 'false',
      WORKER_METRICS_PORT: '0',
      WORKER_SHUTDOWN_GRACE: '2s',
      WORKER_MAX_HEAP: '256',
      OUTBOUND_ALLOW_HOSTS: feeds.upstream.host,
      OUTBOUND_IDLE_TIMEOUT: '2s',
      OUTBOUND_TOTAL_TIMEOUT: '5s',
      // The workers encrypt with the test stack's key, so the test's client (testTemporal) and they read each other.
      PAYLOAD_KEYS: TEST_PAYLOAD_KEYS,
    };
    workers.push(await startWorker({ WORKER_TASK_QUEUES: intakeQueue }), await startWorker({ WORKER_TASK_QUEUES: harvestQueue }));
  }, 180_000);

  afterAll(async () => {
    await Promise.allSettled(workers.map((w) => w.stop()));
    await feeds?.close();
    await sandbox?.close();
    await temporal?.close();
    await db?.drop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  /** workers/main.ts as the supervisor starts it: its own heap bound, an IPC channel, "ready" when polling. */
  async function startWorker(extra: NodeJS.ProcessEnv): Promise<WorkerProcess> {
    const heap = extra.WORKER_MAX_HEAP ?? env.WORKER_MAX_HEAP;
    const proc = spawn(process.execPath, [`--max-old-space-size=${heap}`, '--import', 'tsx', path.join(ROOT, 'workers/main.ts')], {
      cwd: ROOT,
      env: { ...env, ...extra },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    let out = '';
    const keep = (d: Buffer) => (out = (out + d.toString()).slice(-20_000));
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker not ready in 90 s:\n${out}`)), 90_000);
      proc.on('message', (m: { type?: string }) => {
        if (m?.type === 'ready') {
          clearTimeout(timer);
          resolve();
        }
      });
      void exited.then(({ code }) => {
        clearTimeout(timer);
        reject(new Error(`worker exited (${code}) before ready:\n${out}`));
      });
    });
    return {
      proc,
      output: () => out,
      exited,
      peakRssMb() {
        const kb = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'))?.[1]);
        return Math.round(kb / 1024);
      },
      async stop() {
        if (proc.exitCode !== null || proc.signalCode !== null) return;
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      },
    };
  }

  const feed = (name: string, p: string): SourceQuery => ({ name, source: 'feed', url: `${feeds.upstream.url}${p}` });

  async function startHarvest(queries: SourceQuery[]) {
    const input: HarvestInput = { trigger: 'test', queries, tuning: { retryBackoffMs: 100, llmBackoffMs: 100 } };
    return temporal.client.workflow.start(HARVEST_WORKFLOW, { taskQueue: harvestQueue, workflowId: `iso-harvest-${Date.now()}-${++seq}`, args: [input] });
  }

  /** The run's summary as the harvest stored it (harvest_runs), once finished. */
  async function harvestSummary(workflowId: string, timeoutMs = 90_000): Promise<HarvestSummary> {
    let row: { summary: HarvestSummary } | undefined;
    await expect
      .poll(
        async () => {
          row = (await db.pool.query(`SELECT summary FROM harvest_runs WHERE workflow_id = $1 AND finished_at IS NOT NULL`, [workflowId])).rows[0];
          return Boolean(row);
        },
        { timeout: timeoutMs, interval: 250 },
      )
      .toBe(true);
    return row!.summary;
  }

  /** An intake on the intake queue, followed in the read model until it waits for a person. */
  async function intakeReachesApproval(timeoutMs = 90_000): Promise<{ workflowId: string; ms: number }> {
    const t = Date.now();
    const { workflowId } = await submit(temporal.client, intakeQueue, uniqueLead());
    try {
      await expect
        .poll(async () => (await db.pool.query(`SELECT stage FROM prospects WHERE id = $1`, [workflowId])).rows[0]?.stage, { timeout: timeoutMs, interval: 250 })
        .toBe('AWAITING_APPROVAL');
    } catch (err) {
      const described = await temporal.client.workflow.getHandle(workflowId).describe().catch((e: Error) => e.message);
      throw new Error(`intake ${workflowId} did not reach AWAITING_APPROVAL: ${JSON.stringify(typeof described === 'string' ? described : described.status)}\nintake worker output:\n${workers[0]!.output().slice(-4000)}`, { cause: err });
    }
    return { workflowId, ms: Date.now() - t };
  }

  it('a harvest meeting a 300 MiB answer, an endless drip and a redirect into loopback is refused with flat memory, while an intake completes on the other worker', async () => {
    const harvestWorker = workers[1]!;
    const rssBefore = harvestWorker.peakRssMb();
    const harvest = await startHarvest([
      feed('huge', '/huge'),
      feed('drip', '/drip'),
      feed('gzip-bomb', '/gzip-bomb'),
      feed('redirect', '/redirect-to-admin'),
      feed('allowed', '/ok'),
    ]);
    const intake = await intakeReachesApproval();
    const summary = await harvestSummary(harvest.workflowId);
    const byName = Object.fromEntries(summary.queries.map((q) => [q.name, q]));
    expect(byName.huge).toMatchObject({ stoppedBy: 'rejected', error: expect.stringContaining('OUTBOUND_MAX_BYTES') });
    expect(byName.drip).toMatchObject({ stoppedBy: 'rejected', error: expect.stringContaining('OUTBOUND_TOTAL_TIMEOUT') });
    expect(byName['gzip-bomb']).toMatchObject({ stoppedBy: 'rejected', error: expect.stringContaining('OUTBOUND_MAX_BYTES') });
    expect(byName.redirect).toMatchObject({ stoppedBy: 'rejected', error: expect.stringContaining('loopback address') });
    expect(byName.allowed).toMatchObject({ stoppedBy: 'complete', inserted: 1 });
    expect(feeds.admin.hits).toEqual([]);

    const rssPeak = harvestWorker.peakRssMb();
    console.info(
      `isolation: intake reached AWAITING_APPROVAL in ${intake.ms} ms during the hostile harvest; harvest worker peak RSS ${rssBefore} -> ${rssPeak} MiB; ` +
        `the 300 MiB answer got ${(feeds.sent.get('/huge')! / MiB).toFixed(1)} MiB out before the hang-up`,
    );
    // Reading 300 MiB would have taken the heap past its 256 MiB bound; streaming with the cap keeps the peak near where it was.
    expect(rssPeak - rssBefore).toBeLessThan(100);
    expect(feeds.sent.get('/huge')!).toBeLessThan(32 * MiB);
    expect(harvestWorker.proc.exitCode).toBeNull();
  }, 120_000);

  it('a harvest worker whose heap blows up dies alone: the intake worker keeps working, and a restarted harvest worker runs the next harvest', async () => {
    // The old failure, on purpose: a size cap far above the heap bound, so reading the 300 MiB answer exhausts the heap.
    await workers[1]!.stop();
    const fragile = await startWorker({ WORKER_TASK_QUEUES: harvestQueue, WORKER_MAX_HEAP: '128', OUTBOUND_MAX_BYTES: '512mb' });
    workers.push(fragile);
    const doomed = await startHarvest([feed('huge', '/huge')]);
    const [death, intake] = await Promise.all([fragile.exited, intakeReachesApproval()]);
    expect(fragile.output()).toMatch(/heap out of memory|Allocation failed/i);
    expect(death.code === null ? death.signal : death.code).toBeTruthy();
    console.info(`isolation: harvest worker died (${death.signal ?? `exit ${death.code}`}, heap out of memory); intake reached AWAITING_APPROVAL in ${intake.ms} ms meanwhile`);
    expect(workers[0]!.proc.exitCode).toBeNull();
    // A second intake after the crash: the intake worker is untouched.
    await intakeReachesApproval();

    // What the supervisor does: start the harvest worker again (with its normal cap); harvests run again.
    await doomed.terminate('test: its worker was crashed on purpose');
    workers.push(await startWorker({ WORKER_TASK_QUEUES: harvestQueue }));
    const next = await startHarvest([feed('allowed-again', '/ok')]);
    const summary = await harvestSummary(next.workflowId);
    expect(summary.queries).toEqual([expect.objectContaining({ name: 'allowed-again', stoppedBy: 'complete' })]);
  }, 300_000);
});
