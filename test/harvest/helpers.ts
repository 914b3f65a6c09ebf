import type { Worker } from '@temporalio/worker';
import type { WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { createActivities } from '../../activities/index.js';
import { createHarvestActivities } from '../../activities/harvest/index.js';
import { loadConfig, type Config } from '../../lib/config/config.js';
import { loadHarvestConfig, type HarvestConfig } from '../../lib/config/harvest.js';
import { createLogger } from '../../lib/config/logger.js';
import type { SandboxClient } from '../../sandbox/client.js';
import type { Sandbox } from '../../sandbox/server.js';
import type { HarvestInput, HarvestSummary, HarvestTuning, SourceQuery } from '../../lib/domain/harvest.js';
import { testDatabase, testSandbox, testTemporal, testWorker, uniqueTaskQueue } from '../helpers/stack.js';
import { HARVEST_WORKFLOW } from '../../workflows/harvest/messages.js';

/** Retries and timeouts short enough for tests; the logic is the production one. */
export const FAST_TUNING: Partial<HarvestTuning> = {
  retryBackoffMs: 100,
  llmBackoffMs: 100,
  llmAttempts: 3,
  rateLimitMaxWaitMs: 5_000,
};

export const COMPETITORS: SourceQuery = { name: 'competitors', source: 'x', query: '(Outboundly OR PipeNest OR MailRaven OR Salesbolt) -is:retweet' };

export interface HarvestStack {
  db: Awaited<ReturnType<typeof testDatabase>>;
  temporal: Awaited<ReturnType<typeof testTemporal>>;
  sandbox: Sandbox;
  control: SandboxClient;
  config: Config;
  harvest: HarvestConfig;
  taskQueue: string;
  worker: Worker;
  start(input: HarvestInput, id?: string): Promise<WorkflowHandleWithFirstExecutionRunId>;
  run(input: HarvestInput, id?: string): Promise<HarvestSummary>;
  close(): Promise<void>;
}

let seq = 0;

/**
 * A database, a sandbox and a worker on a task queue of their own, for one test file.
 * `overrides` are settings for this stack (HARVEST_*, and e.g. OUTBOUND_ALLOW_HOSTS for a
 * feed served on this machine: loopback is refused unless named there).
 */
export async function harvestStack(overrides: Record<string, string> = {}): Promise<HarvestStack> {
  const [db, temporal, sb] = await Promise.all([testDatabase(), testTemporal(), testSandbox()]);
  const config = await loadConfig({ env: {}, overrides: { SANDBOX_URL: sb.sandbox.url, ...overrides } });
  const taskQueue = uniqueTaskQueue('harvest');
  const harvest = loadHarvestConfig({ env: {}, overrides: { HARVEST_SLACK_CHANNEL: '#signals', HARVEST_TASK_QUEUE: taskQueue, ...overrides } });
  const log = createLogger({ name: 'test', level: 'silent' });
  const deps = { config, pool: db.pool, log };
  const activities = { ...createActivities(deps), ...createHarvestActivities(deps, { harvest }) };
  const worker = await testWorker(temporal, activities, taskQueue);
  const start = (input: HarvestInput, id = `harvest-test-${Date.now()}-${++seq}`) =>
    temporal.client.workflow.start(HARVEST_WORKFLOW, { taskQueue, workflowId: id, args: [{ trigger: 'test', ...input, tuning: { ...FAST_TUNING, ...input.tuning } } satisfies HarvestInput] });
  return {
    db,
    temporal,
    sandbox: sb.sandbox,
    control: sb.client,
    config,
    harvest,
    taskQueue,
    worker: worker.worker,
    start,
    run: async (input, id) => (await start(input, id)).result() as Promise<HarvestSummary>,
    async close() {
      await worker.stop().catch(() => undefined);
      await temporal.close();
      await sb.sandbox.close();
      await db.drop();
    },
  };
}

export interface SlackPost {
  channel: string;
  ts: string;
  text: string;
  metadata?: { event_type: string; event_payload: { message_key: string; run_key: string; kind: string; count: number } };
  source: string;
}

/** Posts the harvest made (API posts carrying our metadata). */
export async function harvestPosts(control: SandboxClient): Promise<SlackPost[]> {
  const { messages } = await control.get<{ messages: SlackPost[] }>('/_sandbox/slack/messages');
  return messages.filter((m) => m.metadata?.event_type === 'prospector_signal');
}

/**
 * The harvest activities on a test database and the sandbox, without Temporal: for activity-level tests.
 * `withSettings` builds them again on the same database and sandbox with more settings (OUTBOUND_ALLOW_HOSTS).
 */
export async function harvestActivitiesStack() {
  const db = await testDatabase();
  const { sandbox, client: control } = await testSandbox();
  const withSettings = async (overrides: Record<string, string> = {}) => {
    const config = await loadConfig({ env: {}, overrides: { SANDBOX_URL: sandbox.url, ...overrides } });
    return createHarvestActivities({ config, pool: db.pool, log: createLogger({ name: 't', level: 'silent' }) }, { harvest: loadHarvestConfig({ env: {} }) });
  };
  const acts = await withSettings();
  return { db, sandbox, control, acts, withSettings };
}
