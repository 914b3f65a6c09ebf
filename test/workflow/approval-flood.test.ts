import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { createActivities } from '../../activities/index.js';
import { signApprovalToken } from '../../lib/domain/approval-token.js';
import type { Config } from '../../lib/config/config.js';
import { createLogger } from '../../lib/config/logger.js';
import type { IntakeResult } from '../../lib/domain/prospect.js';
import { quietTemporalRuntime, testDatabase, testSandbox, testTemporal, testWorker, uniqueTaskQueue } from '../helpers/stack.js';
import { decide, productionRules, signalDecision } from './approval-fixtures.js';
import type { DecisionAction } from '../../lib/domain/approval-token.js';
import { auditOf, registerApprovers, status, submit, uniqueLead, waitForStage } from './intake-helpers.js';

/**
 * A flood of refused signals must not kill an intake: each is refused on the
 * record without copying what came before, the gate continues as new when its
 * history grows, and a genuine decision afterwards is taken as usual.
 * FLOOD_SIGNALS sets the count (10,000 by default).
 *
 * Temporal records every signal in the run's history and accepts a
 * continue-as-new only when no new signal is waiting, so while the flood lasts
 * its run grows by about one event per signal; what the gate controls is that
 * it adds little to that, copies nothing, and hands over once the flood stops.
 */

const FLOOD = Number(process.env.FLOOD_SIGNALS ?? 10_000);
const ANA = 'ana@prospector.example';

describe('a flood of refused signals', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let sandbox: Awaited<ReturnType<typeof testSandbox>>['sandbox'];
  let client: Client;
  let config: Config;
  let worker: { stop(): Promise<void> } | undefined;
  const taskQueue = uniqueTaskQueue('flood');

  beforeAll(async () => {
    quietTemporalRuntime('ERROR');
    let sb;
    [db, temporal, sb] = await Promise.all([testDatabase(), testTemporal(), testSandbox()]);
    sandbox = sb.sandbox;
    client = temporal.client;
    config = await productionRules(sandbox.url);
    worker = await testWorker(temporal, createActivities({ config, pool: db.pool, log: createLogger({ name: 'test', level: 'silent' }) }), taskQueue);
    await registerApprovers(db.pool, [ANA]);
  });

  afterAll(async () => {
    await worker?.stop();
    await sandbox?.close();
    await temporal?.close();
    await db?.drop();
  });

  it(`${FLOOD} refused signals leave the intake alive with small histories; the next genuine approval decides it`, async () => {
    const { workflowId, runId: firstRun } = await submit(client, taskQueue, uniqueLead(), { mode: 'draft_only' });
    await waitForStage(client, workflowId, ['AWAITING_APPROVAL']);
    const handle = client.workflow.getHandle(workflowId);
    const forged = signApprovalToken('a-secret-this-deployment-does-not-have', { workflowId, action: 'approve', version: 1, contentHash: 'f'.repeat(64), approver: ANA, expiresAt: Date.now() / 1000 + 3600, issuedAt: Date.now() / 1000 });
    const huge = 'x'.repeat(200 * 1024);
    const refused = (i: number): [DecisionAction, unknown] => {
      if (i % 1000 === 999) return ['approve', { version: 1, approver: ANA, body: huge }];
      switch (i % 5) {
        case 0: return ['approve', { version: 7, approver: ANA }];
        case 1: return ['approve', { version: 1, approver: ANA }];
        case 2: return ['approve', { version: 1, approver: ANA, token: forged }];
        case 3: return ['edit', { version: 1, editor: ANA }];
        default: return ['reject', { reason: 'nobody named' }];
      }
    };

    // 32 senders at once, without a pause: the harshest case, as an attacker would send them.
    const started = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < FLOOD) {
          const [name, payload] = refused(next++);
          await signalDecision(client, workflowId, name, payload);
        }
      }),
    );
    const sentIn = performance.now() - started;
    await expect.poll(async () => (await status(client, workflowId)).refusalCount, { timeout: 240_000, interval: 1_000 }).toBe(FLOOD);
    const refusedIn = performance.now() - started;

    const st = await status(client, workflowId);
    expect(st).toMatchObject({ stage: 'AWAITING_APPROVAL', approvalState: 'AWAITING_APPROVAL' });
    expect(st.refusals.length).toBeLessThanOrEqual(20);
    expect(st.intakeKey).toBe(firstRun);
    await decide(client, config.approvals, workflowId, { action: 'approve', approver: ANA, reason: 'after the flood' });
    expect((await handle.result()) as IntakeResult).toMatchObject({ stage: 'APPROVED', decision: { by: ANA, signed: true } });

    // Every run of the chain, first to last, with its history.
    const runs: { runId: string; events: number; bytes: number; input: number }[] = [];
    for (let runId: string | undefined = firstRun; runId; ) {
      const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
      const described = await client.workflow.getHandle(workflowId, runId).describe();
      const input = history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads!.reduce((n, p) => n + (p.data?.length ?? 0), 0);
      runs.push({ runId, events: history.events!.length, bytes: described.historySize ?? 0, input });
      runId = history.events!.at(-1)!.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
    }
    const audit = await auditOf(db.pool, workflowId);
    const total = runs.reduce((n, r) => n + r.events, 0);
    console.log(
      `flood: ${FLOOD} refused signals sent in ${(sentIn / 1000).toFixed(1)} s, all refused on the record after ${(refusedIn / 1000).toFixed(1)} s; ` +
        `${runs.length} runs (continue-as-new), ${total} history events in all; ` +
        `largest run ${Math.max(...runs.map((r) => r.events))} events / ${(Math.max(...runs.map((r) => r.bytes)) / 1024 / 1024).toFixed(2)} MiB; ` +
        `the deciding run ${runs.at(-1)!.events} events / ${(runs.at(-1)!.bytes / 1024).toFixed(0)} KiB; ` +
        `largest hand-over input ${(Math.max(...runs.slice(1).map((r) => r.input)) / 1024).toFixed(0)} KiB`,
    );
    expect(audit.filter((a) => a.outcome === 'refused')).toHaveLength(FLOOD);
    expect(audit.filter((a) => a.outcome === 'refused').every((a) => a.actor === (a.action === 'reject' ? 'unknown' : ANA))).toBe(true);
    expect(runs.length).toBeGreaterThan(1);
    // Temporal terminates a run at 51,200 events or 50 MiB. The gate adds a few events per thousand
    // refusals on top of the one per signal, and the run after the flood starts small.
    expect(total).toBeLessThan(FLOOD * 1.1 + 500);
    for (const run of runs) {
      expect(run.events).toBeLessThan(FLOOD * 1.1 + 500);
      expect(run.bytes).toBeLessThan(16 * 1024 * 1024);
      expect(run.input).toBeLessThan(256 * 1024);
    }
    expect(runs.at(-1)!.events).toBeLessThan(200);
    // The run that took over at the gate replays in intake-replay.test.ts (refresh with INTAKE_SAVE_HISTORIES=1).
    if (process.env.INTAKE_SAVE_HISTORIES) {
      const history = await client.workflow.getHandle(workflowId, runs.at(-1)!.runId).fetchHistory();
      writeFileSync(path.join(import.meta.dirname, 'histories', 'approval-integrity-continued-at-gate.json'), `${JSON.stringify(history)}\n`);
    }
    expect(runs.at(-1)!.bytes).toBeLessThan(512 * 1024);
  }, 420_000);
});
