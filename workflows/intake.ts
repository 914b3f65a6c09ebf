import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  defineQuery,
  defineSignal,
  isCancellation,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { DraftContent, DraftRef, EmailContext } from '../activities/gmail-drafts.js';
import type { ResolvedCrm } from '../activities/crm-records.js';
import type { SenderProfile } from '../activities/intake.js';
import type { ProgressStamp } from '../activities/prospects-store.js';
import type { ScreenedLead } from '../activities/screening.js';
import type { WriteOutcome, WriterContext } from '../activities/email-writer.js';
import {
  DEFAULT_APPROVAL_TIMEOUT_MS,
  draftMessageId,
  durationMs,
  normaliseEmail,
  type ApprovalStateValue,
  type ApprovePayload,
  type Decision,
  type EditPayload,
  type IntakeInput,
  type IntakeResult,
  type IntakeStatus,
  type LeadInput,
  type RejectPayload,
  type SendMode,
  type Stage,
} from '../lib/prospect.js';
import { ApprovalState, ProspectDomain, ProspectOwner, ProspectStage } from '../lib/search-attributes.js';

/**
 * Workflow 1, prospect intake: screen → resolve in HubSpot → Gmail context →
 * calendar slots → write (grounded) → Gmail draft → HubSpot task and note →
 * the approval gate → draft stays approved (draft_only) or is sent
 * (send_on_approval) → task closed, decision note.
 *
 * The gate is three signals with JSON payloads (docs/intake.md) so any
 * Temporal client can drive it, e.g. `temporal workflow signal --name approve
 * --input '{"version":1,"approver":"ana@example.com"}'`. Nothing is sent
 * unless an `approve` for the current draft version arrived while the gate was
 * open; the send activity checks that again against PostgreSQL.
 */

export const approveSignal = defineSignal<[ApprovePayload]>('approve');
export const rejectSignal = defineSignal<[RejectPayload]>('reject');
export const editSignal = defineSignal<[EditPayload]>('edit');
export const statusQuery = defineQuery<IntakeStatus>('status');

// Database-only steps: retried until PostgreSQL answers (it may be restarting), within half an hour.
const store = proxyActivities<Activities>({
  startToCloseTimeout: '20 seconds',
  scheduleToCloseTimeout: '30 minutes',
  retry: { initialInterval: '200 ms', backoffCoefficient: 2, maximumInterval: '10 seconds' },
});

// Provider steps: heartbeating, so a dead worker is noticed in seconds; bounded retries, 429 delays honoured.
const providers = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '500 ms', backoffCoefficient: 2, maximumInterval: '20 seconds', maximumAttempts: 15 },
});

// The LLM: slower calls, fewer attempts (a bad draft is judged, not retried).
const writer = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '15 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 8 },
});

/** A signal as received; `early` when it arrived before the gate opened (no draft had been shown yet). */
type Inbound = { at: string; early: boolean } & (
  | { signal: 'approve'; payload: ApprovePayload }
  | { signal: 'reject'; payload: RejectPayload }
  | { signal: 'edit'; payload: EditPayload }
);

const MEETING_MINUTES = 30;

export async function prospectIntake(raw: IntakeInput): Promise<IntakeResult> {
  const info = workflowInfo();
  // A bare lead ({email, name, ...}) is accepted too, for starters that send only that.
  const input: IntakeInput = raw && typeof raw === 'object' && !raw.lead && 'email' in raw ? { lead: raw as unknown as LeadInput } : raw;
  let mode: SendMode = input.mode === 'send_on_approval' ? 'send_on_approval' : 'draft_only';
  let timeoutMs = durationMs(input.approvalTimeout) ?? DEFAULT_APPROVAL_TIMEOUT_MS;
  const first = normaliseEmail(input.lead?.email);
  const lead0 = first.ok ? { email: first.email, domain: first.domain } : { email: String(input.lead?.email ?? '').replace(/\u0000/g, '').slice(0, 320), domain: '' };

  const status: IntakeStatus = {
    workflowId: info.workflowId,
    runId: info.runId,
    intakeKey: info.firstExecutionRunId,
    stage: 'SCREENING',
    approvalState: 'NONE',
    mode,
    lead: { ...lead0, name: text(input.lead?.name), company: text(input.lead?.company), title: text(input.lead?.title), source: text(input.lead?.source) },
    sender: input.sender ?? '',
    slots: [],
    facts: [],
    refusals: [],
    history: [],
  };
  let seq = 0;
  const inbox: Inbound[] = [];
  const seenRequests = new Set<string>();
  let gateOpen = false;
  let decided = false;

  const now = () => new Date().toISOString();
  const receive = (msg: Inbound) => {
    if (!msg.payload || typeof msg.payload !== 'object') (msg as { payload: unknown }).payload = {};
    const id = msg.payload.requestId;
    if (id) {
      if (seenRequests.has(id)) return; // a retried API call: already queued or handled
      seenRequests.add(id);
    }
    inbox.push(msg);
  };
  setHandler(approveSignal, (payload) => receive({ signal: 'approve', payload, at: now(), early: !gateOpen }));
  setHandler(rejectSignal, (payload) => receive({ signal: 'reject', payload, at: now(), early: !gateOpen }));
  setHandler(editSignal, (payload) => receive({ signal: 'edit', payload, at: now(), early: !gateOpen }));
  setHandler(statusQuery, () => status);

  const note = (step: string, outcome: string, detail?: string) => status.history.push({ at: now(), step, outcome, ...(detail ? { detail } : {}) });

  let indexed = '';
  /** Moves to a stage: search attributes now, the stamp for the activity that makes it durable. */
  const enter = (stage: Stage, approval: ApprovalStateValue = status.approvalState): ProgressStamp => {
    status.stage = stage;
    status.approvalState = approval;
    const owner = status.owner ? (status.owner.email ?? status.owner.id) : undefined;
    const signature = [stage, approval, status.lead.domain, owner].join('|');
    if (signature !== indexed) {
      indexed = signature;
      upsertSearchAttributes([
        { key: ProspectStage, value: stage },
        { key: ApprovalState, value: approval },
        ...(status.lead.domain ? [{ key: ProspectDomain, value: status.lead.domain }] : []),
        ...(owner ? [{ key: ProspectOwner, value: owner }] : []),
      ]);
    }
    return stamp();
  };
  const stamp = (): ProgressStamp => ({
    workflowId: info.workflowId,
    runId: info.runId,
    intakeKey: info.firstExecutionRunId,
    runStartedAt: info.runStartTime.toISOString(),
    seq: ++seq,
    stage: status.stage,
    approvalState: status.approvalState,
    mode,
    draftVersion: status.draft?.version ?? 0,
    lead: { email: status.lead.email, domain: status.lead.domain, name: status.lead.name, company: status.lead.company, source: status.lead.source },
    owner: status.owner?.email ?? status.owner?.id,
    submissionId: input.submissionId,
  });
  const finish = (stage: Stage, reason?: string): IntakeResult => {
    enter(stage);
    status.reason = reason ?? status.reason;
    return { stage, reason: status.reason, draftVersion: status.draft?.version, decision: status.decision };
  };

  let crm: ResolvedCrm | undefined;
  let draft: DraftContent | undefined;
  let ref: DraftRef | undefined;
  let taskId: string | undefined;

  try {
    // 1. Screen
    const screened = await store.intakeScreen(enter('RESOLVING'), {
      lead: input.lead,
      sender: input.sender,
      mode: input.mode,
      approvalTimeoutMs: durationMs(input.approvalTimeout),
    });
    // Unset inputs take the deployment's configuration.
    status.sender = screened.defaults.sender;
    mode = status.mode = input.mode === 'send_on_approval' || input.mode === 'draft_only' ? input.mode : screened.defaults.mode;
    timeoutMs = durationMs(input.approvalTimeout) ?? screened.defaults.approvalTimeoutMs;
    if (!screened.accepted) {
      note('screen', 'skipped', `${screened.reason}: ${screened.detail}`);
      status.reason = `${screened.reason}: ${screened.detail}`;
      await recordPending('SKIPPED');
      return finish('SKIPPED', status.reason);
    }
    const lead: ScreenedLead = screened.lead;
    status.lead = { email: lead.email, domain: lead.domain, name: lead.name, company: lead.company, title: lead.title, source: lead.source };
    note('screen', 'accepted');

    // 2. Resolve in HubSpot
    const resolved = await providers.intakeResolveCrm(stamp(), { lead, sender: status.sender });
    crm = resolved.crm;
    const sender: SenderProfile = resolved.sender;
    status.owner = crm.owner;
    status.crm = { contactId: crm.contact.id, companyId: crm.company?.id };
    status.facts = crm.facts;
    status.lead.company = status.lead.company ?? crm.company?.name;
    note('resolve', crm.contact.created ? 'contact_created' : 'contact_found', crm.company ? `company ${crm.company.name ?? crm.company.id}` : 'no company');

    // 3. Gmail context
    const context: EmailContext = await providers.intakeGatherContext(enter('GATHERING_CONTEXT'), { email: lead.email });
    note('context', context.reply ? 'reply_in_thread' : `${context.threadCount} thread(s)`);

    // 4. Slots
    const prospectTimeZone = lead.timeZone ?? crm.contact.timeZone;
    status.slots = await providers.intakeProposeSlots(enter('FINDING_SLOTS'), { sender, prospectTimeZone });
    note('slots', `${status.slots.length} proposed`);

    // 5. Write, judged; one regeneration with the problems as feedback, then a human.
    const writerContext: WriterContext = {
      prospect: {
        name: lead.name ?? ([crm.contact.firstName, crm.contact.lastName].filter(Boolean).join(' ') || undefined),
        email: lead.email,
        company: status.lead.company,
        title: crm.contact.jobTitle ?? lead.title,
        timeZone: prospectTimeZone,
      },
      sender: { name: sender.name, company: sender.company, email: sender.email },
      facts: crm.facts,
      slots: status.slots,
      meeting: { minutes: MEETING_MINUTES },
      ...(context.reply ? { reply: { threadId: context.reply.threadId, subject: context.reply.subject } } : {}),
      ...(context.latest ? { thread: context.latest.messages.map((m) => ({ from: m.from, at: m.at, text: m.text })) } : {}),
      lead: { notes: lead.notes, source: lead.source },
    };
    enter('WRITING');
    let attempts = 1;
    let written: WriteOutcome = await writer.intakeWriteDraft(stamp(), { context: writerContext, attempt: 1, feedback: [] });
    note('write', written.ok ? 'grounded' : 'rejected', written.problems.join('; ') || undefined);
    if (!written.ok) {
      attempts = 2;
      written = await writer.intakeWriteDraft(stamp(), { context: writerContext, attempt: 2, feedback: written.problems });
      note('write', written.ok ? 'grounded' : 'rejected', written.problems.join('; ') || undefined);
    }
    status.grounding = { attempts, problems: written.problems };
    if (!written.ok) {
      status.reason = `grounding: ${written.problems.join('; ')}`;
      await providers.intakeNeedsHuman(enter('NEEDS_HUMAN'), {
        prospect: { email: lead.email, name: writerContext.prospect.name, company: status.lead.company },
        problems: written.problems,
        ownerId: crm.owner?.id,
        contactId: crm.contact.id,
        companyId: crm.company?.id,
      });
      note('needs_human', 'handed_over');
      await recordPending('NEEDS_HUMAN');
      return finish('NEEDS_HUMAN', status.reason);
    }

    // 6. The Gmail draft (version 1)
    draft = {
      to: { address: lead.email, name: writerContext.prospect.name },
      from: { address: sender.email, name: sender.name },
      subject: written.subject,
      body: written.body,
      messageId: draftMessageId(info.firstExecutionRunId, 1, sender.email),
      intakeKey: info.firstExecutionRunId,
      version: 1,
      ...(context.reply ? { reply: { threadId: context.reply.threadId, inReplyTo: context.reply.inReplyTo, references: context.reply.references } } : {}),
    };
    const factsUsed = written.factsUsed;
    setDraftView(draft, undefined, factsUsed);
    ref = await providers.intakeCreateDraft(enter('DRAFTING'), { draft, factsUsed });
    setDraftView(draft, ref, factsUsed);
    note('draft', ref.created ? 'created' : 'found_existing', `v1 ${ref.draftId}`);

    // 7. HubSpot task and note
    const deadlineMs = Date.now() + timeoutMs;
    const deadline = new Date(deadlineMs).toISOString();
    const who = { email: lead.email, name: writerContext.prospect.name, company: status.lead.company };
    enter('RECORDING');
    ({ taskId } = await providers.intakeCreateTask(stamp(), {
      subject: draft.subject,
      prospect: who,
      deadline,
      ownerId: crm.owner?.id,
      contactId: crm.contact.id,
      companyId: crm.company?.id,
      mode,
    }));
    status.crm.taskId = taskId;
    note('task', 'created', taskId);
    const { noteId } = await providers.intakeAddNote(stamp(), {
      prospect: who,
      subject: draft.subject,
      version: 1,
      replying: Boolean(draft.reply),
      slots: status.slots,
      facts: crm.facts,
      factsUsed,
      deadline,
      mode,
      ownerId: crm.owner?.id,
      contactId: crm.contact.id,
      companyId: crm.company?.id,
    });
    status.crm.noteId = noteId;
    note('note', 'created', noteId);

    // 8. The approval gate
    status.approval = { deadline, timeoutMs };
    // Open from the moment the stage says so: a signal sent by someone who saw AWAITING_APPROVAL is on time.
    gateOpen = true;
    const awaiting = enter('AWAITING_APPROVAL', 'AWAITING_APPROVAL');
    // Noted before the record is written, so a status query that sees the stage also sees the gate.
    note('gate', 'open', `until ${deadline}`);
    await store.intakeRecord(awaiting, {
      audit: { kind: 'step', action: 'await_approval', outcome: 'open', details: { version: 1, deadline, mode } },
      patch: { approvalDeadline: deadline },
    });
    const decision = await runGate(deadlineMs);
    status.decision = decision;
    decided = true;

    if (decision.outcome !== 'approved') {
      const end: Stage = decision.outcome === 'rejected' ? 'REJECTED' : 'EXPIRED';
      await closeOut(end, decision);
      return finish(end);
    }
    if (mode === 'draft_only') {
      await closeOut('APPROVED', decision);
      return finish('APPROVED');
    }
    return await sendApproved(decision);
  } catch (err) {
    return await fail(err);
  }

  // ---- the gate ---------------------------------------------------------------------------

  async function runGate(deadlineMs: number): Promise<Decision> {
    for (;;) {
      const remaining = deadlineMs - Date.now();
      if (remaining <= 0 || !(await condition(() => inbox.length > 0, remaining))) {
        const expired: Decision = { outcome: 'expired', at: now() };
        await store.intakeRecord(enter('CLOSING', 'EXPIRED'), {
          audit: { kind: 'decision', action: 'expire', outcome: 'expired', actor: 'timer', details: { version: status.draft?.version ?? null, timeoutMs: status.approval?.timeoutMs ?? null } },
          patch: { data: { decision: expired } },
        });
        note('gate', 'expired');
        return expired;
      }
      const msg = inbox.shift()!;
      const decision = await handle(msg);
      if (decision) return decision;
    }
  }

  /** One signal at the open gate: a decision, an applied edit, or a recorded refusal. */
  async function handle(msg: Inbound): Promise<Decision | undefined> {
    const current = status.draft!.version;
    if (msg.signal === 'reject') {
      const p = msg.payload;
      const by = text(p.approver) ?? 'unknown';
      const decision: Decision = { outcome: 'rejected', by, version: Number.isInteger(p.version) ? p.version : current, reason: text(p.reason), at: msg.at, requestId: p.requestId };
      await store.intakeRecord(enter('CLOSING', 'REJECTED'), {
        audit: { kind: 'decision', action: 'reject', outcome: 'rejected', actor: by, details: { version: decision.version ?? null, currentVersion: current, reason: decision.reason ?? null, requestId: p.requestId ?? null } },
        patch: { reason: decision.reason, data: { decision } },
      });
      note('gate', 'rejected', `by ${by}`);
      return decision;
    }
    const p = msg.payload;
    const by = text(msg.signal === 'approve' ? (p as ApprovePayload).approver : (p as EditPayload).editor) ?? 'unknown';
    if (msg.early) {
      await refuse(msg, by, 'it arrived before the draft was ready for approval');
      return undefined;
    }
    if (by === 'unknown') {
      await refuse(msg, by, `the payload names no ${msg.signal === 'approve' ? 'approver' : 'editor'}`);
      return undefined;
    }
    // "2" from a hand-typed JSON payload counts as 2; anything else that is not the current version is refused.
    const version = typeof p.version === 'string' && /^\d+$/.test(p.version) ? Number(p.version) : p.version;
    if (version === undefined || version === null) {
      await refuse(msg, by, `the payload names no draft version (the current version is ${current})`);
      return undefined;
    }
    if (version !== current) {
      await refuse(msg, by, `draft version ${String(version)} is not the current version ${current}`);
      return undefined;
    }
    const edits = text(p.subject, false) !== undefined || text(p.body, false) !== undefined;
    if (msg.signal === 'edit' && !edits) {
      await refuse(msg, by, 'an edit needs a subject or a body');
      return undefined;
    }
    if (edits) {
      const applied = await applyEdit(msg, by);
      if (!applied) return undefined;
    }
    if (msg.signal === 'edit') return undefined;

    const approve = p as ApprovePayload;
    const d = status.draft!;
    const decision: Decision = { outcome: 'approved', by, version: d.version, reason: text(approve.reason), at: msg.at, requestId: approve.requestId };
    await store.intakeRecordApproval(enter(mode === 'send_on_approval' ? 'SENDING' : 'CLOSING', 'APPROVED'), {
      version: d.version,
      approver: by,
      reason: decision.reason,
      requestId: approve.requestId,
      messageId: d.messageId,
      subject: d.subject,
      body: d.body,
    });
    note('gate', 'approved', `v${d.version} by ${by}`);
    return decision;
  }

  async function applyEdit(msg: Inbound & { signal: 'approve' | 'edit' }, by: string): Promise<boolean> {
    const p = msg.payload;
    let result;
    try {
      result = await providers.intakeReviseDraft(stamp(), {
        draftId: ref!.draftId,
        base: draft!,
        subject: text(p.subject, false),
        body: text(p.body, false),
        editor: by,
        requestId: p.requestId,
        factsUsed: status.draft!.factsUsed,
      });
    } catch (err) {
      // Gmail refused the edit for good (e.g. the draft was deleted there): the gate stays open.
      if (!(err instanceof ActivityFailure)) throw err;
      await refuse(msg, by, `edit failed: ${describeFailure(err)}`);
      return false;
    }
    if (!result.applied) {
      await refuse(msg, by, `edit refused: ${result.problems.join('; ')}`);
      return false;
    }
    draft = result.draft;
    ref = result.ref;
    setDraftView(draft, ref, status.draft!.factsUsed, by);
    note('edit', 'applied', `v${draft.version} by ${by}`);
    return true;
  }

  async function refuse(msg: Inbound, by: string, reason: string): Promise<void> {
    const version = (msg.payload as { version?: number }).version;
    status.refusals.push({ at: msg.at, signal: msg.signal, by, version, reason, requestId: msg.payload.requestId });
    note(msg.signal, 'refused', reason);
    await store.intakeRecord(stamp(), {
      audit: { key: `refusal:${status.refusals.length}`, kind: 'signal', action: msg.signal, outcome: 'refused', actor: by, details: { version: version ?? null, currentVersion: status.draft?.version ?? null, reason, requestId: msg.payload.requestId ?? null } },
      patch: { data: { refusals: status.refusals } },
    });
  }

  /** Signals that arrive when no draft awaits approval are refused, on the record (rejects too). */
  async function recordPending(end: Stage): Promise<void> {
    while (inbox.length) {
      const msg = inbox.shift()!;
      const by = text(msg.signal === 'approve' ? (msg.payload as ApprovePayload).approver : msg.signal === 'edit' ? (msg.payload as EditPayload).editor : (msg.payload as RejectPayload).approver) ?? 'unknown';
      await refuse(msg, by, `no draft is awaiting approval (intake ends ${end})`);
    }
    await store.intakeRecord(enter(end), { audit: { kind: 'step', action: 'end', outcome: end.toLowerCase(), details: { reason: status.reason ?? null } }, patch: { reason: status.reason }, finalStage: end });
  }

  // ---- after the decision -------------------------------------------------------------------

  async function sendApproved(decision: Decision): Promise<IntakeResult> {
    const d = status.draft!;
    try {
      const sent = await providers.intakeSendDraft(stamp(), { version: d.version, draftId: d.draftId!, messageId: d.messageId });
      status.sent = { gmailMessageId: sent.gmailMessageId, at: now(), version: d.version };
      note('send', sent.alreadySent ? 'found_sent' : 'sent', `v${d.version}`);
      await closeOut('SENT', decision, { gmailMessageId: sent.gmailMessageId });
      return finish('SENT');
    } catch (err) {
      const failure = err instanceof ActivityFailure && err.cause instanceof ApplicationFailure ? err.cause : undefined;
      if (!failure || !['DraftMissing', 'DraftChanged', 'NotApproved', 'AlreadySent'].includes(failure.type ?? '')) throw err;
      // The send step refused on its own checks: a person decides what happens next.
      status.reason = `send refused: ${failure.message}`;
      note('send', 'refused', failure.message);
      await closeOut('NEEDS_HUMAN', decision, undefined, status.reason);
      return finish('NEEDS_HUMAN', status.reason);
    }
  }

  async function closeOut(end: Stage, decision: Decision, sent?: { gmailMessageId: string }, why?: string): Promise<void> {
    const approval: ApprovalStateValue = decision.outcome === 'approved' ? 'APPROVED' : decision.outcome === 'rejected' ? 'REJECTED' : 'EXPIRED';
    status.stage = end;
    status.approvalState = approval;
    await providers.intakeCloseOut(enter(end, approval), {
      decision,
      mode,
      sent,
      taskId,
      draftId: ref?.draftId,
      ownerId: crm?.owner?.id,
      contactId: crm?.contact.id,
      companyId: crm?.company?.id,
      note: why,
    });
    note('close', end.toLowerCase());
    // Signals after the decision change nothing; they are refused on the record.
    while (inbox.length) {
      const msg = inbox.shift()!;
      await refuse(msg, 'unknown', `the intake was already decided (${decision.outcome})`);
    }
  }

  async function fail(err: unknown): Promise<IntakeResult> {
    const cancelled = isCancellation(err);
    const reason = cancelled ? 'cancelled' : describeFailure(err);
    status.reason = reason;
    note('failed', cancelled ? 'cancelled' : 'error', reason);
    // Recording the failure must happen even when the workflow itself is being cancelled.
    await CancellationScope.nonCancellable(async () => {
      if (decided && status.decision?.outcome === 'approved' && status.sent) {
        // The email went out; only the close-out failed. Keep SENT, say what is missing.
        await store.intakeRecord(enter('SENT', 'APPROVED'), { audit: { kind: 'step', action: 'close', outcome: 'incomplete', details: { reason } }, patch: { reason: `close-out incomplete: ${reason}` }, finalStage: 'SENT' });
        return;
      }
      await store.intakeRecord(enter('FAILED', gateOpen && !decided ? 'NONE' : status.approvalState), {
        audit: { kind: 'step', action: 'fail', outcome: cancelled ? 'cancelled' : 'failed', details: { reason } },
        patch: { reason },
        finalStage: 'FAILED',
      });
    });
    if (cancelled) throw err;
    return finish(status.stage, reason);
  }

  function setDraftView(d: DraftContent, r: DraftRef | undefined, factsUsed: string[], editedBy?: string) {
    status.draft = {
      version: d.version,
      subject: d.subject,
      body: d.body,
      draftId: r?.draftId,
      messageId: d.messageId,
      threadId: r?.threadId || d.reply?.threadId,
      replying: Boolean(d.reply),
      factsUsed,
      ...(editedBy ? { editedBy } : {}),
    };
  }
}

/** A trimmed non-empty string, or undefined; `collapse` folds whitespace (names, reasons). */
function text(value: unknown, collapse = true): string | undefined {
  if (typeof value !== 'string') return undefined;
  // NUL cannot be stored in PostgreSQL text; nothing a person types needs it.
  const clean = value.replace(/\u0000/g, '');
  const t = collapse ? clean.replace(/\s+/g, ' ').trim() : clean.trim();
  return t ? t.slice(0, collapse ? 500 : 5000) : undefined;
}

function describeFailure(err: unknown): string {
  if (err instanceof ActivityFailure) {
    const cause = err.cause as { message?: string } | undefined;
    return `${err.activityType ?? 'activity'} failed: ${cause?.message ?? err.message}`.slice(0, 500);
  }
  return String((err as Error)?.message ?? err).slice(0, 500);
}
