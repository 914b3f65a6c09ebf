import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { composeRaw, createGmailDrafts } from '../../activities/intake/gmail.js';
import { createGmail } from '../../activities/providers/google.js';
import { createActivities } from '../../activities/index.js';
import { draftHash, fieldHashes, contentOfDraft } from '../../lib/domain/approval-content.js';
import { signApprovalToken } from '../../lib/domain/approval-token.js';
import type { Config } from '../../lib/config/config.js';
import { createLogger } from '../../lib/config/logger.js';
import type { IntakeResult } from '../../lib/domain/prospect.js';
import { recordApproval } from '../../lib/store/sends.js';
import type { SandboxClient } from '../../sandbox/client.js';
import type { Sandbox } from '../../sandbox/server.js';
import { quietTemporalRuntime, testDatabase, testSandbox, testTemporal, testWorker, uniqueTaskQueue } from '../helpers/stack.js';
import { decide, productionRules, signalDecision, signedDecision } from './approval-fixtures.js';
import { INTAKE_WORKFLOW } from '../../workflows/intake/messages.js';
import { auditOf, draftContent, effectsOf, registerApprovers, status, submit, uniqueLead, waitForStage } from './intake-helpers.js';

/**
 * "Only a known approver's approval of the exact content is ever sent", on a
 * real Temporal server, PostgreSQL and the provider sandbox, with workers that
 * apply production's approval rules (signed decisions only).
 */

const ANA = 'ana@prospector.example';

describe('approval integrity', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let sandbox: Sandbox;
  let sbx: SandboxClient;
  let client: Client;
  let draftOnly: Config;
  let sends: Config;
  const workers: { stop(): Promise<void> }[] = [];
  const draftOnlyQueue = uniqueTaskQueue('integrity-draft-only');
  const sendQueue = uniqueTaskQueue('integrity-send');

  beforeAll(async () => {
    quietTemporalRuntime('ERROR');
    let sb;
    [db, temporal, sb] = await Promise.all([testDatabase(), testTemporal(), testSandbox()]);
    ({ sandbox, client: sbx } = sb);
    client = temporal.client;
    draftOnly = await productionRules(sandbox.url);
    sends = await productionRules(sandbox.url, { SEND_MODE: 'send_on_approval', SEND_LOOKUP_PATIENCE: '30s' });
    const log = createLogger({ name: 'test', level: 'silent' });
    workers.push(await testWorker(temporal, createActivities({ config: draftOnly, pool: db.pool, log }), draftOnlyQueue));
    workers.push(await testWorker(temporal, createActivities({ config: sends, pool: db.pool, log }), sendQueue));
    await registerApprovers(db.pool, [ANA]);
  });

  afterAll(async () => {
    await Promise.allSettled(workers.map((w) => w.stop()));
    await sandbox?.close();
    await temporal?.close();
    await db?.drop();
  });

  const result = (workflowId: string) => client.workflow.getHandle(workflowId).result() as Promise<IntakeResult>;
  const refusalsOf = async (workflowId: string) => (await auditOf(db.pool, workflowId)).filter((a) => a.outcome === 'refused');

  it('production rules on a draft_only deployment: a raw start asking to send, unsigned and forged approvals are refused, and a genuine approval sends nothing', async () => {
    const lead = uniqueLead();
    const workflowId = `prospect-${lead.email}`;
    // Straight into Temporal, as anyone who reaches it could, asking for send_on_approval.
    const started = await client.workflow.start(INTAKE_WORKFLOW, { taskQueue: draftOnlyQueue, workflowId, args: [{ lead, mode: 'send_on_approval' }] });
    const st = await waitForStage(client, workflowId, ['AWAITING_APPROVAL']);
    expect(st.mode).toBe('draft_only');
    expect(st.history).toContainEqual(expect.objectContaining({ step: 'mode', outcome: 'narrowed' }));

    const genuine = signedDecision(draftOnly.approvals, st, { action: 'approve', approver: ANA });
    await signalDecision(client, workflowId, 'approve', { version: 1, approver: ANA, reason: 'unsigned' });
    await signalDecision(client, workflowId, 'approve', { ...genuine, token: signApprovalToken('another-secret-of-at-least-32-characters', { workflowId, action: 'approve', version: 1, contentHash: draftHash(draftContent(st)), approver: ANA, expiresAt: Date.now() / 1000 + 600, issuedAt: Date.now() / 1000 }) });
    await signalDecision(client, workflowId, 'approve', signedDecision(draftOnly.approvals, st, { action: 'approve', approver: 'mallory@prospector.example' }));
    await signalDecision(client, workflowId, 'approve', { ...genuine, approver: 'lee@prospector.example' });
    await signalDecision(client, workflowId, 'approve', { ...genuine, body: 'Hi,\n\nA different body than the one that was signed, long enough to pass.' });
    await expect.poll(async () => (await refusalsOf(workflowId)).length, { timeout: 20_000 }).toBe(5);
    expect((await refusalsOf(workflowId)).map((r) => [r.actor, r.details.reason])).toEqual([
      [ANA, expect.stringMatching(/^unsigned: this deployment takes decisions only with a signed approval token/)],
      [ANA, expect.stringMatching(/not signed by this deployment/)],
      ['mallory@prospector.example', 'mallory@prospector.example is not a registered approver'],
      ['lee@prospector.example', `the approval token was issued to ${ANA}, not lee@prospector.example`],
      [ANA, 'the approval token was signed for other content than this decision produces'],
    ]);
    expect((await status(client, workflowId)).stage).toBe('AWAITING_APPROVAL');

    await signalDecision(client, workflowId, 'approve', genuine);
    expect(await result(workflowId)).toMatchObject({ stage: 'APPROVED', decision: { outcome: 'approved', by: ANA, signed: true } });
    const fx = await effectsOf(sbx, started.firstExecutionRunId);
    expect(fx.sent).toHaveLength(0);
    expect(fx.drafts).toHaveLength(1);
  });

  it('a Gmail draft changed behind our back, Message-ID kept, is not sent: NEEDS_HUMAN naming what changed', async () => {
    const { workflowId, runId } = await submit(client, sendQueue, uniqueLead());
    const st = await waitForStage(client, workflowId, ['AWAITING_APPROVAL']);
    const gmail = createGmail(sends.providers.google);
    const raw = await composeRaw({ ...draftContent(st), body: `${st.draft!.body}\n\nP.S. We will also give you 90% off.` });
    await gmail.users.drafts.update({ userId: 'me', id: st.draft!.draftId!, requestBody: { message: { raw } } });
    expect((await effectsOf(sbx, runId)).drafts[0]!.rfc822MessageId).toBe(st.draft!.messageId);

    await decide(client, sends.approvals, workflowId, { action: 'approve', approver: ANA });
    const end = await result(workflowId);
    expect(end.stage).toBe('NEEDS_HUMAN');
    expect(end.reason).toMatch(/The Gmail draft changed after ana@prospector\.example approved version 1: the body differs from what was approved; not sending/);
    expect((await effectsOf(sbx, runId)).sent).toHaveLength(0);
  });

  it('a reset to before WRITING after an approval: what is sent is what was approved in the run that sent it, and no audit row is lost', async () => {
    const lead = uniqueLead();
    // The first run's writer says A; after the reset the writer says B.
    await sbx.post('/_sandbox/openai/script', { match: lead.company, schema: 'prospect_email', times: 1, content: { subject: 'A first idea', body: 'Hi Robin,\n\nWould a short call next week help your team?\n\nBest regards', factsUsed: [] } });
    const { workflowId, runId } = await submit(client, sendQueue, lead);
    const a = await waitForStage(client, workflowId, ['AWAITING_APPROVAL']);
    expect(a.draft!.subject).toBe('A first idea');

    // Gmail refuses to send for now, so the approved A is still in flight when the reset comes.
    await sbx.addFaults({ provider: 'google', kind: 'error', status: 503, match: 'POST /gmail/v1/users/me/drafts/send' });
    await decide(client, sends.approvals, workflowId, { action: 'approve', approver: ANA });
    await expect.poll(async () => (await db.pool.query('SELECT count(*)::int AS n FROM intake_approvals WHERE intake_key = $1', [runId])).rows[0].n, { timeout: 15_000 }).toBe(1);
    const before = await auditOf(db.pool, workflowId);

    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    const write = history.events!.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'intakeWriteDraft')!;
    const resetTo = write.activityTaskScheduledEventAttributes!.workflowTaskCompletedEventId!;
    const reset: { runId?: string | null } = await client.workflowService.resetWorkflowExecution({
      namespace: 'default',
      workflowExecution: { workflowId, runId },
      workflowTaskFinishEventId: resetTo,
      requestId: randomUUID(),
      reason: 'test: redo the writing',
    });
    await sbx.clearFaults('google');
    const newRun = reset.runId!;
    const b = await waitForStage(client, workflowId, ['AWAITING_APPROVAL']);
    expect(b.runId).toBe(newRun);
    expect(b.intakeKey).toBe(runId);
    expect(b.draft!.subject).not.toBe('A first idea');
    // Gmail holds what the new run shows, in the intake's one draft.
    const shown = await effectsOf(sbx, runId);
    expect(shown.drafts).toHaveLength(1);
    expect(shown.drafts[0]).toMatchObject({ subject: b.draft!.subject, body: b.draft!.body });
    // The old approval came back with the reset (signals are reapplied) and is refused: it arrived before this run's gate.
    await expect.poll(async () => (await status(client, workflowId)).refusals.map((r) => r.by), { timeout: 10_000 }).toContain(ANA);

    await decide(client, sends.approvals, workflowId, { action: 'approve', approver: ANA, reason: 'B this time' });
    const end = await result(workflowId);
    expect(end, end.reason).toMatchObject({ stage: 'SENT' });
    const fx = await effectsOf(sbx, runId);
    expect(fx.sent).toHaveLength(1);
    expect(fx.sent[0]).toMatchObject({ subject: b.draft!.subject, body: b.draft!.body, rfc822MessageId: b.draft!.messageId });
    expect(fx.drafts).toHaveLength(0);
    expect(fx.tasks).toHaveLength(1);

    const after = await auditOf(db.pool, workflowId);
    expect(after.filter((row) => before.some((old) => old.id === row.id))).toHaveLength(before.length);
    const ofNewRun = after.filter((row) => row.run_id === newRun).map((row) => `${row.action}:${row.outcome}`);
    expect(ofNewRun).toEqual(['write:grounded', 'draft:rewritten', 'task:found_existing', 'note:found_existing', 'await_approval:open', 'approve:refused', 'approve:approved', 'send:sent', 'close:sent']);
    const approvals = after.filter((row) => row.action === 'approve' && row.outcome === 'approved');
    expect(approvals.map((row) => row.run_id)).toEqual([runId, newRun]);
    expect(approvals[1]!.details.contentHash).toBe(draftHash(draftContent(b)));
  });

  it('"apply then fail" on drafts.send with Gmail search lagging: the lost answer is recognised as sent, not handed to a person', async () => {
    await sbx.post('/_sandbox/google/settings', { searchLagMs: 60_000 });
    try {
      await sbx.addFaults({ provider: 'google', kind: 'apply_then_fail', match: 'POST /gmail/v1/users/me/drafts/send', count: 1 });
      const one = await submit(client, sendQueue, uniqueLead());
      await waitForStage(client, one.workflowId, ['AWAITING_APPROVAL']);
      await decide(client, sends.approvals, one.workflowId, { action: 'approve', approver: ANA });
      expect(await result(one.workflowId)).toMatchObject({ stage: 'SENT' });
      expect((await effectsOf(sbx, one.runId)).sent).toHaveLength(1);

      // Without the direct read (Gmail gave the sent message another id), the search is waited for.
      await sbx.post('/_sandbox/google/settings', { searchLagMs: 4_000 });
      await sbx.addFaults(
        { provider: 'google', kind: 'apply_then_fail', match: 'POST /gmail/v1/users/me/drafts/send', count: 1 },
        { provider: 'google', kind: 'error', status: 404, match: '/^GET \\/gmail\\/v1\\/users\\/me\\/messages\\/[^/?]+/' },
      );
      const two = await submit(client, sendQueue, uniqueLead());
      await waitForStage(client, two.workflowId, ['AWAITING_APPROVAL']);
      await decide(client, sends.approvals, two.workflowId, { action: 'approve', approver: ANA });
      const end = await result(two.workflowId);
      expect(end).toMatchObject({ stage: 'SENT' });
      expect((await effectsOf(sbx, two.runId)).sent).toHaveLength(1);
      const send = (await auditOf(db.pool, two.workflowId)).find((a) => a.action === 'send')!;
      expect(send.outcome).toBe('found_sent');
    } finally {
      await sbx.clearFaults('google');
      await sbx.post('/_sandbox/google/settings', { searchLagMs: 0 });
    }
  });

  it('one send per intake: a second attempt while the first holds the claim does not reach Gmail, and a cancelled attempt stops talking to it', async () => {
    const { workflowId, runId } = await submit(client, sendQueue, uniqueLead());
    const st = await waitForStage(client, workflowId, ['AWAITING_APPROVAL']);
    const d = draftContent(st);
    await recordApproval(db.pool, { intakeKey: runId, version: 1, workflowId, runId, approver: ANA, messageId: d.messageId, contentHash: draftHash(d), fieldHashes: fieldHashes(contentOfDraft(d)), signed: true });
    const drafts = createGmailDrafts(createGmail(sends.providers.google), db.pool);
    const request = { intakeKey: runId, version: 1, draftId: st.draft!.draftId!, messageId: d.messageId, contentHash: draftHash(d) };

    await sbx.addFaults({ provider: 'google', kind: 'latency', delayMs: 3_000, match: 'POST /gmail/v1/users/me/drafts/send' });
    const abort = new AbortController();
    const first = drafts.sendApprovedDraft(request, { lookupPatienceMs: 30_000, holder: 'first', signal: abort.signal });
    await expect.poll(async () => (await db.pool.query('SELECT state FROM intake_sends WHERE intake_key = $1', [runId])).rows[0]?.state, { timeout: 10_000 }).toBe('sending');
    await expect(drafts.sendApprovedDraft(request, { lookupPatienceMs: 30_000, holder: 'second' })).rejects.toMatchObject({ type: 'SendBusy' });
    const cancelledAt = Date.now();
    abort.abort();
    await expect(first).rejects.toThrow();
    expect(Date.now() - cancelledAt).toBeLessThan(1_500);
    await sbx.clearFaults('google');

    // The cancelled attempt's request had already reached Gmail, which sends it: the next attempt finds it sent and sends nothing more.
    await expect.poll(async () => (await effectsOf(sbx, runId)).sent.length, { timeout: 10_000 }).toBe(1);
    expect(await drafts.sendApprovedDraft(request, { lookupPatienceMs: 30_000, holder: 'third' })).toMatchObject({ alreadySent: true, recorded: true });
    expect((await db.pool.query('SELECT state FROM intake_sends WHERE intake_key = $1', [runId])).rows[0].state).toBe('sent');
    expect((await effectsOf(sbx, runId)).sent).toHaveLength(1);
    await client.workflow.getHandle(workflowId).terminate('test over');
  });
});
