import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { createGmail } from '../../activities/providers/google.js';
import { contentHash, contentOfMime, draftHash } from '../../lib/domain/approval-content.js';
import { signApprovalToken } from '../../lib/domain/approval-token.js';
import { loadConfig, type Config } from '../../lib/config/config.js';
import { editDraft } from '../../lib/domain/draft.js';
import type { IntakeStatus } from '../../lib/domain/prospect.js';
import type { SandboxClient } from '../../sandbox/client.js';
import type { Sandbox } from '../../sandbox/server.js';
import { quietTemporalRuntime, testDatabase, testSandbox, testTemporal, uniqueTaskQueue } from '../helpers/stack.js';
import { productionRules, signalDecision, signedDecision, TOKEN_SECRET } from './approval-fixtures.js';
import { startWorkerProcess, writeWorkflowBundle, type ChildWorker } from './fixtures/spawn-worker.js';
import { auditOf, draftContent, effectsOf, registerApprovers, status, submit, uniqueLead, waitForStage } from './intake-helpers.js';

/**
 * The core promise as a property: whatever mix of approvals, edits and
 * rejections arrives (current or stale, signed, forged, unsigned, or signed
 * for someone who is not an approver), with the worker SIGKILLed and the
 * workflow reset to before its writing step in between, every email sent is
 * exactly the content of a version a registered approver approved, and no
 * intake sends more than one. Workers run with production's approval rules.
 * APPROVAL_PROPERTY_RUNS sets the number of runs (intakes).
 */

const RUNS = Number(process.env.APPROVAL_PROPERTY_RUNS ?? 16);
const ANA = 'ana@prospector.example';
const MALLORY = 'mallory@prospector.example';

/** Grounded drafts the writer may say after a reset, so a reset run shows other text. */
const VARIANTS = [
  { subject: 'A thought for your team', body: 'Hi Robin,\n\nWould a short call next week help your team?\n\nBest regards', factsUsed: [] },
  { subject: 'Time for a quick call?', body: 'Hi Robin,\n\nCould we find half an hour to talk about your plans?\n\nBest regards', factsUsed: [] },
  { subject: 'A short question', body: 'Hi Robin,\n\nIs improving lead follow-up on your list this quarter?\n\nBest regards', factsUsed: [] },
];

type Signing = 'valid' | 'forged' | 'unsigned' | 'stranger';
type Command =
  | { kind: 'approve'; signing: Signing; stale: boolean; edit: boolean }
  | { kind: 'edit'; signing: Signing; stale: boolean }
  | { kind: 'reject'; signing: Signing }
  | { kind: 'kill' }
  | { kind: 'reset'; variant: number }
  | { kind: 'pause'; ms: number };

const signing = fc.constantFrom<Signing>('valid', 'valid', 'valid', 'forged', 'unsigned', 'stranger');
const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('approve' as const), signing, stale: fc.boolean(), edit: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('edit' as const), signing, stale: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reject' as const), signing }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'kill' as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('reset' as const), variant: fc.nat(VARIANTS.length - 1) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('pause' as const), ms: fc.integer({ min: 50, max: 800 }) }) },
);

describe('approval integrity as a property', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let sandbox: Sandbox;
  let sbx: SandboxClient;
  let client: Client;
  let config: Config;
  let tmp: string;
  let env: Parameters<typeof startWorkerProcess>[0];
  const workers: ChildWorker[] = [];
  const totals = { runs: 0, commands: 0, kills: 0, resets: 0, validApprovals: 0, sent: 0, ends: {} as Record<string, number> };

  beforeAll(async () => {
    quietTemporalRuntime('ERROR');
    tmp = mkdtempSync(path.join(os.tmpdir(), 'approval-property-'));
    const bundle = writeWorkflowBundle(path.join(tmp, 'workflows.js'));
    let sb;
    [db, temporal, sb] = await Promise.all([testDatabase(), testTemporal(), testSandbox()]);
    ({ sandbox, client: sbx } = sb);
    client = temporal.client;
    config = await productionRules(sandbox.url, { SEND_MODE: 'send_on_approval' });
    await registerApprovers(db.pool, [ANA]);
    env = {
      TEMPORAL_ADDRESS: temporal.address,
      DATABASE_URL: db.url,
      SANDBOX_URL: sandbox.url,
      TASK_QUEUE: uniqueTaskQueue('approval-property'),
      WORKFLOW_BUNDLE: await bundle,
      SEND_MODE: 'send_on_approval',
      APPROVAL_TOKEN_SECRET: TOKEN_SECRET,
      SIGNED_APPROVALS_ONLY: '1',
    };
    workers.push(await startWorkerProcess(env));
  });

  afterAll(async () => {
    await Promise.allSettled(workers.map((w) => w.stop()));
    await sandbox?.close();
    await temporal?.close();
    await db?.drop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  /** The payload of one command's signal, and the content hash it approves when it is a genuine approval. */
  function payloadFor(c: Extract<Command, { kind: 'approve' | 'edit' | 'reject' }>, st: IntakeStatus, n: number): { payload: Record<string, unknown>; approves?: string } {
    const edit = c.kind === 'edit' || (c.kind === 'approve' && c.edit) ? { subject: `Revised subject ${String.fromCharCode(65 + (n % 26))}` } : undefined;
    const version = c.kind !== 'reject' && c.stale ? Math.max(1, st.draft!.version - 1) : st.draft!.version;
    const approver = c.signing === 'stranger' ? MALLORY : ANA;
    const signed = signedDecision(config.approvals, st, { action: c.kind, approver, edit, reason: `command ${n}` });
    if (c.kind !== 'reject' && c.stale) signed.version = version;
    if (c.signing === 'unsigned') delete signed.token;
    if (c.signing === 'forged') {
      const current = draftContent(st);
      const produced = edit ? editDraft(current, edit) : { ok: true as const, draft: current };
      signed.token = signApprovalToken('forged-secret-that-is-long-enough-0123456789', {
        workflowId: st.workflowId,
        action: c.kind,
        version: st.draft!.version,
        contentHash: produced.ok ? draftHash(produced.draft) : 'f'.repeat(64),
        approver,
        expiresAt: Math.floor(Date.now() / 1000) + 600,
        issuedAt: Math.floor(Date.now() / 1000),
      });
    }
    if (c.kind !== 'approve' || c.signing !== 'valid') return { payload: signed };
    const produced = edit ? editDraft(draftContent(st), edit) : { ok: true as const, draft: draftContent(st) };
    return { payload: signed, approves: produced.ok ? draftHash(produced.draft) : undefined };
  }

  async function resetBeforeWriting(workflowId: string, variant: number): Promise<boolean> {
    const handle = client.workflow.getHandle(workflowId);
    const { runId } = await handle.describe();
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    const write = history.events!.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'intakeWriteDraft');
    if (!write) return false; // a run continued at the gate has no writing step to go back to
    await sbx.post('/_sandbox/openai/script', { match: workflowId.replace(/^prospect-/, ''), schema: 'prospect_email', content: VARIANTS[variant], times: 1 });
    await client.workflowService.resetWorkflowExecution({
      namespace: 'default',
      workflowExecution: { workflowId, runId },
      workflowTaskFinishEventId: write.activityTaskScheduledEventAttributes!.workflowTaskCompletedEventId!,
      requestId: randomUUID(),
      reason: 'property test: redo the writing',
    });
    return true;
  }

  it(`every email sent is exactly a version a registered approver approved, at most one per intake (${RUNS} runs)`, async () => {
    const gmail = createGmail((await loadConfig({ env: {}, overrides: { SANDBOX_URL: sandbox.url } })).providers.google);
    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 3, maxLength: 10 }), async (commands) => {
        totals.runs++;
        const lead = uniqueLead();
        const { workflowId, runId } = await submit(client, env.TASK_QUEUE, { ...lead, email: lead.email }, { mode: 'send_on_approval', approvalTimeout: '10m' });
        const approved = new Set<string>();
        let st = await waitForStage(client, workflowId, ['AWAITING_APPROVAL'], 90_000);
        for (const [n, c] of commands.entries()) {
          totals.commands++;
          if (c.kind === 'pause') {
            await new Promise((r) => setTimeout(r, c.ms));
            continue;
          }
          if (c.kind === 'kill') {
            totals.kills++;
            await workers.at(-1)!.kill();
            workers.push(await startWorkerProcess(env));
            continue;
          }
          if (c.kind === 'reset') {
            if (await resetBeforeWriting(workflowId, c.variant)) totals.resets++;
            st = await waitForStage(client, workflowId, ['AWAITING_APPROVAL', 'SENT', 'APPROVED', 'REJECTED', 'NEEDS_HUMAN', 'FAILED', 'EXPIRED'], 90_000);
            continue;
          }
          st = await status(client, workflowId);
          if (st.stage !== 'AWAITING_APPROVAL' || !st.draft) continue;
          const { payload, approves } = payloadFor(c, st, n);
          if (approves) {
            approved.add(approves);
            totals.validApprovals++;
          }
          await signalDecision(client, workflowId, c.kind, payload);
        }
        // Close what still waits, then read what went out.
        st = await status(client, workflowId);
        if (st.stage === 'AWAITING_APPROVAL') await signalDecision(client, workflowId, 'reject', signedDecision(config.approvals, st, { action: 'reject', approver: ANA, reason: 'end of run' }));
        const end = await waitForStage(client, workflowId, ['SENT', 'APPROVED', 'REJECTED', 'NEEDS_HUMAN', 'FAILED', 'EXPIRED'], 120_000);
        totals.ends[end.stage] = (totals.ends[end.stage] ?? 0) + 1;

        const sent = (await effectsOf(sbx, runId)).sent;
        expect(sent.length).toBeLessThanOrEqual(1);
        // Told truthfully: an intake whose email went out never ends as if it had not.
        if (sent.length) expect(end.stage === 'SENT' || /check Sent/.test(end.reason ?? ''), `${end.stage}: ${end.reason}`).toBe(true);
        for (const message of sent) {
          totals.sent++;
          const raw = await gmail.users.messages.get({ userId: 'me', id: message.id, format: 'raw' });
          const hash = contentHash(await contentOfMime(Buffer.from(raw.data.raw!, 'base64url')));
          expect(approved.has(hash), `sent content ${hash} was never approved (approved: ${[...approved].join(', ')})`).toBe(true);
        }
        const decisions = (await auditOf(db.pool, workflowId)).filter((a) => a.action === 'approve' && a.outcome === 'approved');
        for (const d of decisions) expect(d, 'an approval the workflow took').toMatchObject({ actor: ANA, details: { signed: true } });
      }),
      { numRuns: RUNS, seed: Number(process.env.APPROVAL_PROPERTY_SEED ?? 20261202), endOnFailure: true },
    );
    console.log(`approval property: ${JSON.stringify(totals)}`);
    expect(totals.validApprovals).toBeGreaterThan(0);
    expect(totals.sent).toBeGreaterThan(0);
  }, 900_000);
});
