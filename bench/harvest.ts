import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import getPort from 'get-port';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { createActivities } from '../activities/index.js';
import { createHarvestActivities } from '../activities/harvest/index.js';
import { startEmbeddedPostgres } from '../infra/postgres-dev.js';
import { findTemporalCli, startTemporalDevServer } from '../infra/temporal-dev.js';
import { loadConfig } from '../lib/config/config.js';
import { EncryptionCodec } from '../lib/config/payload-codec.js';
import { generatePayloadKey, parsePayloadKeys } from '../lib/config/payload-keys.js';
import { createPool, migrate } from '../lib/store/db.js';
import { loadHarvestConfig } from '../lib/config/harvest.js';
import { createLogger } from '../lib/config/logger.js';
import { SandboxClient } from '../sandbox/client.js';
import { allProviders } from '../sandbox/providers/index.js';
import { startSandbox } from '../sandbox/server.js';
import { createWorkers } from '../workers/worker.js';
import type { HarvestInput, HarvestSummary } from '../lib/domain/harvest.js';

/**
 * Harvest benchmark: N sandbox tweets (default 10,000) fetched, stored,
 * analysed by the LLM, scored and notified by one `harvest` run, on a stack
 * this script starts itself (Temporal dev server, embedded PostgreSQL, the
 * sandbox and a worker in this process). Prints wall time, signals/s and LLM
 * calls; exits 1 when a target is missed (< 60 s, ≤ 1 LLM call per 20 signals).
 *
 *   npx tsx bench/harvest.ts [--signals 10000] [--batch 25]
 */

const args = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const SIGNALS = flag('signals', 10_000);
const BATCH = flag('batch', 25);
const TARGET_MS = 60_000;

const say = (line: string) => process.stdout.write(`${line}\n`);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'prospector-bench-'));
chmodSync(tmp, 0o755);
const cleanups: (() => Promise<unknown>)[] = [];

try {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  say(`harvest benchmark: ${SIGNALS} signals, LLM batches of ${BATCH}`);
  say('starting Temporal dev server, PostgreSQL and the sandbox...');
  const binary = await findTemporalCli({ onProgress: say });
  const [temporal, pg, sandbox] = await Promise.all([
    getPort().then((port) => startTemporalDevServer({ binary, port, headless: true, logLevel: 'error' })),
    getPort().then((port) => startEmbeddedPostgres({ dataDir: path.join(tmp, 'pg'), port, ephemeral: true })),
    startSandbox({ providers: allProviders }),
  ]);
  cleanups.push(() => temporal.stop(), () => pg.stop(), () => sandbox.close());
  await migrate(pg.url);
  const pool = createPool(pg.url, 20);
  cleanups.unshift(() => pool.end());

  const config = await loadConfig({ env: {}, overrides: { SANDBOX_URL: sandbox.url, DATABASE_URL: pg.url } });
  const harvest = loadHarvestConfig({ env: {} });
  const log = createLogger({ name: 'bench', level: 'warn' });
  const deps = { config, pool, log };
  const activities = { ...createActivities(deps), ...createHarvestActivities(deps, { harvest }) };
  const connection = await Connection.connect({ address: temporal.address });
  const nativeConnection = await NativeConnection.connect({ address: temporal.address });
  cleanups.unshift(() => connection.close(), () => nativeConnection.close());
  // Payloads encrypted as in production, with a key of this run's own.
  const codec = new EncryptionCodec(parsePayloadKeys(generatePayloadKey('bench')));
  const client = new Client({ connection, dataConverter: { payloadCodecs: [codec] } });
  const taskQueue = 'harvest-bench';
  say('bundling workflows and starting the worker...');
  const [worker] = await createWorkers({
    connection: nativeConnection,
    namespace: 'default',
    activities,
    shutdownGraceMs: 2_000,
    payloadCodec: codec,
    taskQueues: [taskQueue],
    options: { maxConcurrentActivityTaskExecutions: 50 },
    log,
  });
  const running = worker!.run();
  cleanups.unshift(async () => {
    worker!.shutdown();
    await running;
  });

  const control = new SandboxClient(sandbox.url);
  const terms = ['Outboundly', 'PipeNest', 'MailRaven', 'Salesbolt', 'Prospector'];
  await control.post('/_sandbox/x/generate', { count: SIGNALS, seed: 7, terms, spreadMinutes: 24 * 60 });
  const input: HarvestInput = {
    trigger: 'bench',
    queries: [{ name: 'bench', source: 'x', query: terms.join(' OR ') }],
    tuning: { batchSize: BATCH, maxPages: 1_000 },
  };
  const expected = (await control.get<{ count: number }>(`/_sandbox/x/tweets?query=${encodeURIComponent(input.queries![0]!.query!)}`)).count;

  say(`harvesting ${expected} matching tweets...`);
  const started = performance.now();
  const summary = (await client.workflow.execute('harvest', { taskQueue, workflowId: `harvest-bench-${Date.now()}`, args: [input] })) as HarvestSummary;
  const wallMs = performance.now() - started;

  const { rows } = await pool.query(
    `SELECT count(*)::int AS stored, count(analysed_at)::int AS analysed, count(score)::int AS scored, count(DISTINCT external_id)::int AS distinct_ids FROM signals`,
  );
  const db = rows[0] as { stored: number; analysed: number; scored: number; distinct_ids: number };
  const openai = await control.get<{ calls: number; bySchema: Record<string, number> }>('/_sandbox/openai/stats');
  const llmCalls = openai.bySchema.signal_analysis ?? 0;
  const perCall = llmCalls ? db.analysed / llmCalls : Infinity;

  say('');
  say(`signals matched        ${expected}`);
  say(`signals stored         ${db.stored} (distinct external ids ${db.distinct_ids})`);
  say(`analysed / scored      ${db.analysed} / ${db.scored}  (LLM ${summary.totals.analysed.llm}, keywords ${summary.totals.analysed.keywords})`);
  say(`pages fetched          ${summary.queries.reduce((n, q) => n + q.pages, 0)}`);
  say(`notified               ${summary.totals.notified.signals} signals in ${summary.totals.notified.messages} Slack message(s)`);
  say(`continued as new       ${summary.continuedAsNew} time(s)`);
  say(`stages (ms)            ${Object.entries(summary.stageMs).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  say(`wall time              ${(wallMs / 1000).toFixed(2)} s   (target < ${TARGET_MS / 1000} s)`);
  say(`throughput             ${(db.stored / (wallMs / 1000)).toFixed(0)} signals/s`);
  say(`LLM calls              ${llmCalls}  = one per ${perCall.toFixed(1)} signals   (target: at most one per 20)`);

  const misses = [
    wallMs >= TARGET_MS && `wall time ${(wallMs / 1000).toFixed(1)} s >= 60 s`,
    perCall < 20 && `LLM calls: one per ${perCall.toFixed(1)} signals`,
    db.stored !== expected && `stored ${db.stored} of ${expected}`,
    (db.analysed !== db.stored || db.scored !== db.stored) && 'not every signal analysed and scored',
  ].filter(Boolean);
  say(misses.length ? `RESULT: MISSED (${misses.join('; ')})` : 'RESULT: PASS');
  process.exitCode = misses.length ? 1 : 0;
} catch (err) {
  process.stderr.write(`benchmark failed: ${(err as Error).stack ?? err}\n`);
  process.exitCode = 2;
} finally {
  for (const cleanup of cleanups) await cleanup().catch(() => undefined);
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(process.exitCode ?? 0);
