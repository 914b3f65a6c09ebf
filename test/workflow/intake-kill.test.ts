import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SandboxClient } from '../../sandbox/client.js';
import type { Sandbox } from '../../sandbox/server.js';
import { approveSignal } from '../../workflows/intake/messages.js';
import { quietTemporalRuntime, testDatabase, testSandbox, testTemporal, uniqueTaskQueue } from '../helpers/stack.js';
import { checkSentInvariants, sandboxFigures } from './fixtures/invariants.js';
import { startWorkerProcess, writeWorkflowBundle, type ChildWorker } from './fixtures/spawn-worker.js';
import { registerApprovers, submit, uniqueLead, waitForStage } from './intake-helpers.js';

/**
 * The durability invariant, small enough for CI: 10 intakes at once against a
 * sandbox failing ~15% of calls (5xx, 429, hangs) plus occasional "apply then
 * fail" on every create, with the worker process SIGKILLed mid-run and a new
 * one started. Every intake still reaches AWAITING_APPROVAL with exactly one
 * draft, task and note; approving all sends exactly one email each, after its
 * approval. (bench/intake.ts runs the 50-intake version and prints timings.)
 */

const N = 10;

describe('intake survives a SIGKILLed worker and a failing sandbox', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let sandbox: Sandbox;
  let sbx: SandboxClient;
  let tmp: string;
  let env: Parameters<typeof startWorkerProcess>[0];
  const workers: ChildWorker[] = [];

  beforeAll(async () => {
    quietTemporalRuntime('ERROR');
    let sb;
    tmp = mkdtempSync(path.join(os.tmpdir(), 'intake-kill-'));
    const bundle = writeWorkflowBundle(path.join(tmp, 'workflows.js'));
    [db, temporal, sb] = await Promise.all([testDatabase(), testTemporal(), testSandbox()]);
    ({ sandbox, client: sbx } = sb);
    env = { TEMPORAL_ADDRESS: temporal.address, DATABASE_URL: db.url, SANDBOX_URL: sandbox.url, TASK_QUEUE: uniqueTaskQueue('intake-kill'), WORKFLOW_BUNDLE: await bundle };
  });

  afterAll(async () => {
    await Promise.allSettled(workers.map((w) => w.stop()));
    await sandbox?.close();
    await temporal?.close();
    await db?.drop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('10 intakes, 15% faults, worker killed mid-run: exactly one draft, task and note each; sends only after approval', async () => {
    await sbx.post('/_sandbox/faults/seed', { seed: 7 });
    await sbx.addFaults(
      ...(['google', 'hubspot', 'openai'] as const).map((provider) => ({ provider, kind: 'chaos' as const, rate: 0.15, delayMs: 1_500, retryAfterSeconds: 1 })),
      { provider: 'google', kind: 'apply_then_fail', match: '/^POST \\/gmail\\/v1\\/users\\/me\\/drafts$/', rate: 0.2 },
      { provider: 'hubspot', kind: 'apply_then_fail', match: '/^POST \\/hubspot\\/crm\\/v3\\/objects\\/(tasks|notes)$/', rate: 0.2 },
    );
    // Slower answers keep intakes in flight long enough for the kill to land mid-run.
    await sbx.addFaults({ provider: 'google', kind: 'latency', delayMs: 150 }, { provider: 'hubspot', kind: 'latency', delayMs: 150 });

    await registerApprovers(db.pool, ['kill-test@prospector.example']);
    workers.push(await startWorkerProcess(env));
    const started = await Promise.all(Array.from({ length: N }, () => submit(temporal.client, env.TASK_QUEUE, uniqueLead(), { mode: 'send_on_approval' })));

    // Kill once some drafts exist but before all do.
    await expect.poll(async () => (await sandboxFigures(sbx, started)).drafts, { timeout: 60_000, interval: 100 }).toBeGreaterThanOrEqual(2);
    const atKill = await sandboxFigures(sbx, started);
    await workers[0]!.kill();
    workers.push(await startWorkerProcess(env));

    await Promise.all(started.map((s) => waitForStage(temporal.client, s.workflowId, ['AWAITING_APPROVAL'], 150_000)));
    const waiting = await sandboxFigures(sbx, started);
    // Mid-run in any case: nothing was approved or sent yet, and usually drafts were still being made.
    expect(atKill.sent).toBe(0);
    expect(waiting).toEqual({ drafts: N, sent: 0, tasks: N, notes: N, decisionNotes: 0 });

    for (const s of started) await temporal.client.workflow.getHandle(s.workflowId).signal(approveSignal, { version: 1, approver: 'kill-test@prospector.example' });
    const ends = await Promise.all(started.map((s) => temporal.client.workflow.getHandle(s.workflowId).result()));
    expect(ends.map((e) => e.stage)).toEqual(Array(N).fill('SENT'));

    expect(await sandboxFigures(sbx, started)).toEqual({ drafts: 0, sent: N, tasks: N, notes: N, decisionNotes: N });
    expect(await checkSentInvariants(db.pool, sbx, started)).toEqual([]);
    const stats = await sbx.stats();
    const injected = Object.values(stats.injected).reduce((n, kinds) => n + Object.values(kinds).reduce((a, b) => a + b, 0), 0);
    expect(injected).toBeGreaterThan(5); // the faults really fired
  }, 240_000);
});
