import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import getPort from 'get-port';
import { Client, Connection } from '@temporalio/client';
import { readSettings, updateSettings } from '../lib/store/settings.js';
import { startEmbeddedPostgres, type EmbeddedDb } from '../infra/postgres-dev.js';
import { findTemporalCli, startTemporalDevServer, type DevServer } from '../infra/temporal-dev.js';
import { loadConfig } from '../lib/config/config.js';
import { EncryptionCodec } from '../lib/config/payload-codec.js';
import { generatePayloadKey, parsePayloadKeys } from '../lib/config/payload-keys.js';
import { createPool, migrate, type Pool } from '../lib/store/db.js';
import { putApprover } from '../lib/store/approvers.js';
import { SandboxClient } from '../sandbox/client.js';
import { allProviders } from '../sandbox/providers/index.js';
import { startSandbox, type Sandbox } from '../sandbox/server.js';
import { startProspectsApi, type ProspectsApi } from '../test/api/prospects-api.js';
import { checkSentInvariants, sandboxFigures, type SandboxFigures, type Started } from '../test/workflow/fixtures/invariants.js';
import { startWorkerProcess, writeWorkflowBundle, type ChildWorker, type WorkerEnv } from '../test/workflow/fixtures/spawn-worker.js';

/**
 * The intake acceptance run, with wall times:
 *
 *   1. clean:  N intakes submitted at once through POST /v1/prospects (send_on_approval),
 *              started by the API's outbox dispatcher;
 *              all reach AWAITING_APPROVAL; the sandbox holds exactly N drafts, N tasks,
 *              N notes and 0 sent; approving all N sends exactly N, each after its
 *              approval in the audit trail.
 *   2. chaos:  the same with the sandbox failing 15% of Google, HubSpot and OpenAI calls
 *              (mixed 5xx, 429 and hangs) and the worker process SIGKILLed twice
 *              (once while drafting, once while sending).
 *
 *   npx tsx bench/intake.ts                  # fresh Temporal dev server, PostgreSQL and sandbox
 *   npx tsx bench/intake.ts --count 50 --fault-rate 0.15 --kills 2
 *   npx tsx bench/intake.ts --temporal 127.0.0.1:7233 --database postgres://…   # running servers
 *
 * The API runs in this process (security on, rate limits off), the worker in a
 * child process so it can be killed. Exit code 1 when an invariant fails.
 */

const { values: args } = parseArgs({
  options: {
    count: { type: 'string', default: '50' },
    'fault-rate': { type: 'string', default: '0.15' },
    kills: { type: 'string', default: '2' },
    temporal: { type: 'string' },
    database: { type: 'string' },
    seed: { type: 'string', default: '11' },
  },
});
const N = Number(args.count);
const FAULT_RATE = Number(args['fault-rate']);
const KILLS = Number(args.kills);

const log = (line: string) => process.stdout.write(`${line}\n`);
/** Whom the bench's API key acts for: a registered approver, as every decision needs. */
const BENCH_APPROVER = 'bench@prospector.example';
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

interface Stack {
  temporal: Client;
  address: string;
  pool: Pool;
  databaseUrl: string;
  sandbox: Sandbox;
  sbx: SandboxClient;
  api: ProspectsApi;
  key: string;
  workerEnv: WorkerEnv;
  workers: ChildWorker[];
  close(): Promise<void>;
}

async function startStack(): Promise<Stack> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'bench-intake-'));
  chmodSync(tmp, 0o755);
  let dev: DevServer | undefined;
  let pg: EmbeddedDb | undefined;
  const started = performance.now();
  const [address, databaseUrl, bundle] = await Promise.all([
    args.temporal ??
      (async () => {
        dev = await startTemporalDevServer({ binary: await findTemporalCli(), port: await getPort(), headless: true });
        return dev.address;
      })(),
    args.database ??
      (async () => {
        pg = await startEmbeddedPostgres({ dataDir: path.join(tmp, 'pg'), port: await getPort(), ephemeral: true, database: 'bench_intake' });
        return pg.url;
      })(),
    writeWorkflowBundle(path.join(tmp, 'workflows.js')),
  ]);
  await migrate(databaseUrl);
  const pool = createPool(databaseUrl, 20);
  const sandbox = await startSandbox({ providers: allProviders, faultSeed: Number(args.seed) });
  const sbx = new SandboxClient(sandbox.url);
  const connection = await Connection.connect({ address });
  // Payloads encrypted as in production, with a key of this run's own (the workers get it too).
  const payloadKeys = generatePayloadKey('bench');
  const temporal = new Client({ connection, dataConverter: { payloadCodecs: [new EncryptionCodec(parsePayloadKeys(payloadKeys))] } });
  // A deployment that sends on approval (the API refuses send_on_approval submissions otherwise).
  const config = await loadConfig({ env: {}, overrides: { SANDBOX_URL: sandbox.url, DATABASE_URL: databaseUrl, LOG_LEVEL: 'silent', SEND_MODE: 'send_on_approval' } });
  const taskQueue = `bench-intake-${process.pid}`;
  const api = await startProspectsApi({ config, pool, temporal, taskQueue });
  const key = await api.key(['admin'], BENCH_APPROVER);
  await putApprover(pool, { identity: BENCH_APPROVER, name: 'bench/intake.ts' }, 'bench');
  log(`stack up in ${seconds(performance.now() - started)} (Temporal ${address}${dev ? ' dev server' : ''}, PostgreSQL${pg ? ' embedded' : ''}, sandbox ${sandbox.url})`);
  const workers: ChildWorker[] = [];
  return {
    temporal,
    address,
    pool,
    databaseUrl,
    sandbox,
    sbx,
    api,
    key,
    workerEnv: { TEMPORAL_ADDRESS: address, DATABASE_URL: databaseUrl, SANDBOX_URL: sandbox.url, TASK_QUEUE: taskQueue, WORKFLOW_BUNDLE: bundle, PAYLOAD_KEYS: payloadKeys },
    workers,
    async close() {
      await Promise.allSettled(workers.map((w) => w.stop()));
      await api.close();
      await sandbox.close();
      await connection.close();
      await pool.end();
      await Promise.allSettled([dev?.stop(), pg?.stop()]);
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}

/** Counts of these intakes per stage, from the read model. */
async function stages(pool: Pool, ids: string[]): Promise<Record<string, number>> {
  const { rows } = await pool.query('SELECT stage, count(*)::int AS n FROM prospect_rows WHERE id = ANY($1::text[]) GROUP BY stage', [ids]);
  return Object.fromEntries(rows.map((r) => [r.stage, r.n]));
}

async function waitFor(pool: Pool, ids: string[], stage: string, timeoutMs: number, during?: (counts: Record<string, number>) => Promise<void>): Promise<number> {
  const started = performance.now();
  let last = '';
  for (;;) {
    const counts = await stages(pool, ids);
    if ((counts[stage] ?? 0) === ids.length) return performance.now() - started;
    const text = JSON.stringify(counts);
    if (text !== last) {
      last = text;
      log(`    ${seconds(performance.now() - started).padStart(7)}  ${text}`);
    }
    if (performance.now() - started > timeoutMs) throw new Error(`not all ${stage} after ${seconds(timeoutMs)}: ${text}`);
    await during?.(counts);
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface RoundResult {
  name: string;
  submitMs: number;
  toAwaitingMs: number;
  approveMs: number;
  toSentMs: number;
  atAwaiting: SandboxFigures;
  atEnd: SandboxFigures;
  violations: string[];
  injected: Record<string, Record<string, number>>;
  kills: string[];
}

async function round(stack: Stack, name: string, chaos: boolean): Promise<RoundResult> {
  log(`\n== ${name}: ${N} intakes${chaos ? `, ${FAULT_RATE * 100}% faults, worker killed ${KILLS}×` : ''}`);
  await stack.sbx.reset();
  await stack.sbx.clearStats();
  if (chaos) {
    await stack.sbx.addFaults(...(['google', 'hubspot', 'openai'] as const).map((provider) => ({ provider, kind: 'chaos' as const, rate: FAULT_RATE, delayMs: 2_000, retryAfterSeconds: 1 })));
  }
  const kills: string[] = [];
  const killWorker = async (when: string) => {
    const victim = stack.workers.at(-1)!;
    await victim.kill();
    stack.workers.push(await startWorkerProcess(stack.workerEnv));
    kills.push(when);
    log(`    worker SIGKILLed ${when}; a new one is polling`);
  };

  const tag = `${name}-${Date.now().toString(36)}`;
  const t0 = performance.now();
  const answers = await Promise.all(
    Array.from({ length: N }, (_, i) =>
      stack.api.call('POST', '/v1/prospects', {
        key: stack.key,
        body: { email: `lead${i}@co${i}-${tag}.example`, name: `Lead ${i}`, company: `Company ${i}`, mode: 'send_on_approval', source: 'bench' },
      }),
    ),
  );
  const submitMs = performance.now() - t0;
  const bad = answers.filter((a) => a.status !== 202);
  if (bad.length) throw new Error(`${bad.length} submissions failed: ${JSON.stringify(bad[0]!.body)}`);
  log(`  submitted ${N} in ${seconds(submitMs)} (stored; the API's dispatcher starts the intakes)`);
  // The run ids (intake keys) come from the dispatcher, once it started each intake.
  const runs = await Promise.all(answers.map((a) => stack.api.runOf(a.body.submissionId, 120_000)));
  const notStarted = runs.filter((r) => r.outcome !== 'started');
  if (notStarted.length) throw new Error(`${notStarted.length} submissions joined an intake instead of starting one`);
  const started: Started[] = runs.map((r) => ({ workflowId: r.workflowId, runId: r.runId }));
  const ids = started.map((s) => s.workflowId);
  log(`  all ${N} started in Temporal ${seconds(performance.now() - t0)} after the first submission`);

  const killDuringDrafting = chaos && KILLS >= 1;
  const toAwaitingMs = await waitFor(stack.pool, ids, 'AWAITING_APPROVAL', 600_000, async () => {
    if (killDuringDrafting && kills.length === 0) {
      const drafts = (await sandboxFigures(stack.sbx, started)).drafts;
      if (drafts >= Math.ceil(N / 3)) await killWorker(`while drafting (${drafts}/${N} drafts made)`);
    }
  });
  const atAwaiting = await sandboxFigures(stack.sbx, started);
  log(`  all AWAITING_APPROVAL ${seconds(toAwaitingMs)} after submitting; sandbox: ${JSON.stringify(atAwaiting)}`);

  const t1 = performance.now();
  const approvals = await Promise.all(ids.map((id) => stack.api.call('POST', `/v1/prospects/${encodeURIComponent(id)}/approve`, { key: stack.key, body: { version: 1 } })));
  const approveMs = performance.now() - t1;
  const refused = approvals.filter((a) => a.status !== 202);
  if (refused.length) throw new Error(`${refused.length} approvals refused: ${JSON.stringify(refused[0]!.body)}`);
  log(`  approved ${N} in ${seconds(approveMs)}`);

  const killDuringSending = chaos && KILLS >= 2;
  const toSentMs = await waitFor(stack.pool, ids, 'SENT', 600_000, async (counts) => {
    if (killDuringSending && kills.length === 1 && (counts.SENT ?? 0) >= Math.ceil(N / 4)) await killWorker(`while sending (${counts.SENT}/${N} sent)`);
  });
  const atEnd = await sandboxFigures(stack.sbx, started);
  const violations = await checkSentInvariants(stack.pool, stack.sbx, started);
  const { injected } = await stack.sbx.stats();
  log(`  all SENT ${seconds(toSentMs)} after approving; sandbox: ${JSON.stringify(atEnd)}`);
  await stack.sbx.clearFaults();
  return { name, submitMs, toAwaitingMs, approveMs, toSentMs, atAwaiting, atEnd, violations, injected, kills };
}

const stack = await startStack();
let failed = false;
try {
  // Caps sized for the run (this may be a shared database); restored afterwards.
  const before = await readSettings(stack.pool);
  await updateSettings(stack.pool, { senderDailyCap: Math.max(before.senderDailyCap, 10 * N + 1_000), paused: false });
  stack.workers.push(await startWorkerProcess(stack.workerEnv));
  const results = [await round(stack, 'clean', false), await round(stack, 'chaos', true)];
  await updateSettings(stack.pool, { senderDailyCap: before.senderDailyCap, paused: before.paused });

  log('\n== results');
  log('round   submit   →AWAITING   approve   →SENT     drafts/tasks/notes/sent at AWAITING   sent/decision notes at end   faults injected');
  for (const r of results) {
    const injected = Object.entries(r.injected).map(([p, kinds]) => `${p} ${Object.entries(kinds).map(([k, n]) => `${k}:${n}`).join(',')}`).join('; ') || 'none';
    log(
      `${r.name.padEnd(7)} ${seconds(r.submitMs).padStart(6)}   ${seconds(r.toAwaitingMs).padStart(8)}   ${seconds(r.approveMs).padStart(6)}   ${seconds(r.toSentMs).padStart(6)}   ` +
        `${[r.atAwaiting.drafts, r.atAwaiting.tasks, r.atAwaiting.notes, r.atAwaiting.sent].join('/').padEnd(36)} ${`${r.atEnd.sent}/${r.atEnd.decisionNotes}`.padEnd(28)} ${injected}`,
    );
    if (r.kills.length) log(`        kills: ${r.kills.join('; ')}`);
    const expected = { drafts: N, sent: 0, tasks: N, notes: N, decisionNotes: 0 };
    const ok = JSON.stringify(r.atAwaiting) === JSON.stringify(expected) && r.atEnd.sent === N && r.atEnd.tasks === N && r.atEnd.notes === N && r.violations.length === 0;
    log(`        invariants: ${ok ? 'all hold' : `FAILED ${JSON.stringify({ atAwaiting: r.atAwaiting, atEnd: r.atEnd })} ${r.violations.slice(0, 10).join(' | ')}`}`);
    if (!ok) failed = true;
  }
} catch (err) {
  failed = true;
  log(`bench failed: ${(err as Error).stack ?? err}`);
} finally {
  await stack.close();
}
process.exit(failed ? 1 : 0);
