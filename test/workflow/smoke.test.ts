import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import { loadConfig } from '../../lib/config/config.js';
import { createLogger } from '../../lib/config/logger.js';
import { ROOT } from '../../lib/config/paths.js';
import { createWorkers } from '../../workers/worker.js';
import { smokeTest } from '../../workflows/index.js';
import { testDatabase, testTemporal, testWorker, uniqueTaskQueue } from '../helpers/stack.js';
import { testPayloadCodec } from '../helpers/payload-keys.js';

describe('smoke workflow on the real Temporal server', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let worker: Awaited<ReturnType<typeof testWorker>> | undefined;
  const taskQueue = uniqueTaskQueue('smoke');

  beforeAll(async () => {
    [db, temporal] = await Promise.all([testDatabase(), testTemporal()]);
    const config = await loadConfig({ env: {} });
    const log = createLogger({ name: 'test', level: 'silent' });
    worker = await testWorker(temporal, createActivities({ config, pool: db.pool, log }), taskQueue);
  });

  afterAll(async () => {
    await worker?.stop();
    await temporal?.close();
    await db?.drop();
  });

  it('runs a workflow whose activity writes the audit trail in PostgreSQL', async () => {
    const workflowId = `smoke-${Date.now()}`;
    const result = await temporal.client.workflow.execute(smokeTest, { taskQueue, workflowId, args: ['hello'] });
    expect(result).toEqual({ workflowId, note: 'hello' });

    const { rows } = await db.pool.query('SELECT actor, action, outcome, details, run_id FROM audit_events WHERE workflow_id = $1', [workflowId]);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ actor: 'system', action: 'smoke_test', outcome: 'ok', details: { note: 'hello' } });
    expect(rows[0].run_id).toBeTruthy();

    const history = await temporal.client.workflow.getHandle(workflowId).fetchHistory();
    const scheduled = history.events!.filter((e) => e.activityTaskScheduledEventAttributes);
    expect(scheduled.map((e) => e.activityTaskScheduledEventAttributes!.activityType!.name)).toEqual(['appendAudit']);
  });

  it('runs from the prebuilt workflow bundle that production workers load', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bundle-'));
    const bundlePath = path.join(dir, 'workflow-bundle.js');
    const built = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'workers/bundle.ts')], {
      cwd: ROOT,
      env: { ...process.env, WORKFLOW_BUNDLE_PATH: bundlePath },
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(built.status, built.stderr).toBe(0);
    expect(statSync(bundlePath).size).toBeGreaterThan(100_000);

    const queue = uniqueTaskQueue('prebuilt');
    const [prebuilt] = await createWorkers({
      connection: temporal.nativeConnection,
      namespace: 'default',
      activities: createActivities({ config: await loadConfig({ env: {} }), pool: db.pool, log: createLogger({ name: 't', level: 'silent' }) }),
      shutdownGraceMs: 1_000,
      payloadCodec: testPayloadCodec(),
      taskQueues: [queue],
      bundlePath,
    });
    const result = await prebuilt!.runUntil(temporal.client.workflow.execute(smokeTest, { taskQueue: queue, workflowId: `prebuilt-${Date.now()}`, args: ['bundled'] }));
    expect(result.note).toBe('bundled');
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes one audit row per event key even when the activity is retried', async () => {
    const activities = createActivities({ config: await loadConfig({ env: {} }), pool: db.pool, log: createLogger({ name: 't', level: 'silent' }) });
    const event = { eventKey: 'retry-key', actor: 'system', kind: 'system' as const, action: 'x', outcome: 'ok' };
    await activities.appendAudit(event);
    await activities.appendAudit(event);
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM audit_events WHERE event_key = 'retry-key'`);
    expect(rows[0].n).toBe(1);
  });

  it('refuses to rewrite the audit trail', async () => {
    await expect(db.pool.query(`UPDATE audit_events SET outcome = 'forged'`)).rejects.toThrow(/append-only/);
    await expect(db.pool.query('DELETE FROM audit_events')).rejects.toThrow(/append-only/);
  });
});
