import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import getPort from 'get-port';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import { startEmbeddedPostgres, type EmbeddedDb } from '../../infra/postgres-dev.js';
import { loadConfig } from '../../lib/config/config.js';
import { createPool, migrate, type Pool } from '../../lib/store/db.js';
import { createLogger } from '../../lib/config/logger.js';
import type { IntakeResult } from '../../lib/domain/prospect.js';
import type { SandboxClient } from '../../sandbox/client.js';
import type { Sandbox } from '../../sandbox/server.js';
import { approveSignal } from '../../workflows/intake/messages.js';
import { quietTemporalRuntime, testSandbox, testTemporal, testWorker, uniqueTaskQueue } from '../helpers/stack.js';
import { auditOf, effectsOf, registerApprovers, status, submit, uniqueLead, waitForStage } from './intake-helpers.js';

/**
 * Once Gmail has sent the email, the intake ends SENT, however long
 * PostgreSQL is away after it: longer than every retry budget the steps
 * before the send have. The test's PostgreSQL is its own, so stopping it
 * touches no other test. PG_OUTAGE_SECONDS sets the outage (60 by default;
 * the longest budget before a send, the database steps', is 30 minutes).
 */

const OUTAGE_SECONDS = Number(process.env.PG_OUTAGE_SECONDS ?? 60);
const ANA = 'ana@prospector.example';

describe('PostgreSQL goes away right after a send', () => {
  let pg: EmbeddedDb;
  let pool: Pool;
  let tmp: string;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let sandbox: Sandbox;
  let sbx: SandboxClient;
  let worker: { stop(): Promise<void> } | undefined;
  const taskQueue = uniqueTaskQueue('send-outage');

  beforeAll(async () => {
    quietTemporalRuntime('ERROR');
    tmp = mkdtempSync(path.join(os.tmpdir(), 'send-outage-'));
    chmodSync(tmp, 0o755);
    let sb;
    [pg, temporal, sb] = await Promise.all([startEmbeddedPostgres({ dataDir: path.join(tmp, 'pg'), port: await getPort(), database: 'outage' }), testTemporal(), testSandbox()]);
    ({ sandbox, client: sbx } = sb);
    await migrate(pg.url);
    pool = createPool(pg.url, 5);
    const config = await loadConfig({ env: {}, overrides: { SANDBOX_URL: sandbox.url, DATABASE_URL: pg.url, SEND_MODE: 'send_on_approval' } });
    worker = await testWorker(temporal, createActivities({ config, pool, log: createLogger({ name: 'test', level: 'silent' }) }), taskQueue);
    await registerApprovers(pool, [ANA]);
  });

  afterAll(async () => {
    await worker?.stop();
    await pool?.end();
    await sandbox?.close();
    await temporal?.close();
    await pg?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it(`stays SENT through a ${OUTAGE_SECONDS} s outage that starts while Gmail sends, and records it when PostgreSQL is back`, async () => {
    const { workflowId, runId } = await submit(temporal.client, taskQueue, uniqueLead(), { mode: 'send_on_approval' });
    await waitForStage(temporal.client, workflowId, ['AWAITING_APPROVAL']);
    // Gmail takes its time answering the send; PostgreSQL stops while it does.
    await sbx.addFaults({ provider: 'google', kind: 'latency', delayMs: 3_000, match: 'POST /gmail/v1/users/me/drafts/send' });
    await temporal.client.workflow.getHandle(workflowId).signal(approveSignal, { version: 1, approver: ANA });
    await expect.poll(async () => (await pool.query('SELECT state FROM intake_sends WHERE intake_key = $1', [runId])).rows[0]?.state, { timeout: 20_000, interval: 50 }).toBe('sending');
    await pg.stop();
    const down = performance.now();

    await expect.poll(async () => (await effectsOf(sbx, runId)).sent.length, { timeout: 10_000 }).toBe(1);
    await new Promise((r) => setTimeout(r, Math.max(0, OUTAGE_SECONDS * 1000 - (performance.now() - down))));
    // Still waiting to record what happened, not failed.
    const during = await status(temporal.client, workflowId);
    expect(during.stage).toBe('SENDING');
    expect(during.sent).toMatchObject({ version: 1 });
    await pg.start();
    const up = performance.now();

    const end = (await temporal.client.workflow.getHandle(workflowId).result()) as IntakeResult;
    console.log(`send-outage: PostgreSQL down ${((up - down) / 1000).toFixed(0)} s from mid-send; intake ${end.stage} ${((performance.now() - up) / 1000).toFixed(1)} s after it came back`);
    expect(end).toMatchObject({ stage: 'SENT' });
    expect((await effectsOf(sbx, runId)).sent).toHaveLength(1);
    expect((await pool.query('SELECT state FROM intake_sends WHERE intake_key = $1', [runId])).rows[0].state).toBe('sent');
    const audit = await auditOf(pool, workflowId);
    expect(audit.map((a) => `${a.action}:${a.outcome}`)).toEqual(expect.arrayContaining(['approve:approved', 'send:sent', 'close:sent']));
    expect((await pool.query('SELECT final_stage FROM intakes WHERE intake_key = $1', [runId])).rows[0].final_stage).toBe('SENT');
  }, (OUTAGE_SECONDS + 180) * 1000);
});
