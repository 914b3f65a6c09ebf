import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  ContinueAsNew,
  continueAsNew,
  defineQuery,
  defineSignal,
  isCancellation,
  patched,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import type { DraftContent, DraftRef, EmailContext } from '../../activities/intake/gmail.js';
import type { SenderProfile } from '../../activities/intake/index.js';
import type { ProgressStamp } from '../../lib/store/prospects.js';
import type { ScreenedLead } from '../../activities/intake/screening.js';
import type { WriteOutcome, WriterContext } from '../../activities/intake/writer.js';
import type { DecisionRequest, DecisionSubject, Verdict } from '../../lib/domain/approvals.js';
import {
  DEFAULT_APPROVAL_TIMEOUT_MS,
  draftMessageId,
  durationMs,
  normaliseEmail,
  SEND_REFUSALS,
  SIGNAL_NAMES,
  STATUS_QUERY,
  type ApprovalStateValue,
  type ApprovePayload,
  type Decision,
  type EditPayload,
  type GateCarry,
  type IntakeInput,
  type IntakeResult,
  type IntakeStatus,
  type LeadInput,
  type Refusal,
  type RejectPayload,
  type SendMode,
  type Stage,
} from '../../lib/domain/prospect.js';
import { ApprovalState, ProspectDomain, ProspectOwner, ProspectStage } from '../../lib/domain/search-attributes.js';
import { clean, inbound, RECENT_REFUSALS, refusalOf, screenSignal, type GateView, type Inbound, type SignalName } from './gate.js';

/**
 * Workflow 1, prospect intake: screen → resolve in HubSpot → Gmail context →
 * calendar slots → write (grounded) → Gmail draft → HubSpot task and note →
 * the approval gate → draft stays approved (draft_only) or is sent
 * (send_on_approval) → task closed, decision note.
 *
 * The gate is three signals with JSON payloads (docs/intake.md) so any
 * Temporal client can drive it. Each signal is screened by the gate's rules
 * (intake/gate.ts: on time, current version, small), then judged by
 * intakeAuthorise (registered approver; in production a signed token binding
 * the exact content), and only then acted on. The send step itself checks
 * the deployment allows sending and that Gmail holds exactly the approved
 * content.
 */

export const approveSignal = defineSignal<[ApprovePayload]>(SIGNAL_NAMES.approve);
export const rejectSignal = defineSignal<[RejectPayload]>(SIGNAL_NAMES.reject);
export const editSignal = defineSignal<[EditPayload]>(SIGNAL_NAMES.edit);
export const statusQuery = defineQuery<IntakeStatus>(STATUS_QUERY);

/**
 * Marks runs whose gate judges signals with intake/gate.ts and intakeAuthorise,
 * records refusals in batches and settles sends truthfully. Histories recorded
 * before it replay through the branches that check it; remove those branches
 * (deprecatePatch) once no such run can be open.
 */
const APPROVAL_INTEGRITY = 'approval-integrity';

/** Signals judged together: one refusal record per batch, authorised in chunks of bounded size. */
const GATE_BATCH = 1_000;
const AUTHORISE_CHUNK = 500;
const AUTHORISE_CHUNK_BYTES = 512 * 1024;
/** Refusals recorded per activity call, by size. */
const REFUSALS_PER_RECORD = 1_000;
/** A waiting gate continues as new before its history grows past this (a flood of signals). */
const GATE_HISTORY_EVENTS = 2_000;
const GATE_HISTORY_BYTES = 2 * 1024 * 1024;
/** Step notes a continued run keeps; request ids remembered for dedupe. */
const KEEP_NOTES = 50;
const KEEP_REQUEST_IDS = 1_000;

// Database-only steps: retried until PostgreSQL answers (it may be restarting), within half an hour.
const store = proxyActivities<Activities>({
  startToCloseTimeout: '20 seconds',
  scheduleToCloseTimeout: '30 minutes',
  retry: { initialInterval: '200 ms', backoffCoefficient: 2, maximumInterval: '10 seconds' },
});

// What must be recorded once an email went out: retried for as long as PostgreSQL is away.
const durableStore = proxyActivities<Activities>({
  startToCloseTimeout: '20 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

// Provider steps: heartbeating, so a dead worker is noticed in seconds; bounded retries, 429 delays honoured.
const providers = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '500 ms', backoffCoefficient: 2, maximumInterval: '20 seconds', maximumAttempts: 15 },
});

// The send: retried until it is settled one way or the other; the step itself gives up, saying why, when it must.
const sender = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

// The LLM: slower calls, fewer attempts (a bad draft is judged, not retried).
const writer = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '15 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 8 },
});

const MEETING_MINUTES = 30;

interface CrmIds {
  ownerId?: string;
  contactId: string;
  companyId?: string;
}

export async function prospectIntake(raw: IntakeInput): Promise<IntakeResult> {
  const info = workflowInfo();
  // A bare lead ({email, name, ...}) is accepted too, for starters that send only that.
  const input: IntakeInput = raw && typeof raw === 'object' && !raw.lead && 'email' in raw ? { lead: raw as unknown as LeadInput } : raw;
  const carry = input.resume;
  // Until the deployment has resolved it (screening), nothing is treated as sendable.
  let mode: SendMode = carry?.status.mode ?? 'draft_only';
  let timeoutMs = durationMs(input.approvalTimeout) ?? DEFAULT_APPROVAL_TIMEOUT_MS;
  const first = normaliseEmail(input.lead?.email);
  const lead0 = first.ok ? { email: first.email, domain: first.domain } : { email: String(input.lead?.email ?? '').replace(/\u0000/g, '').slice(0, 320), domain: '' };

  const status: IntakeStatus = carry
    ? { ...carry.status, runId: info.runId }
    : {
        workflowId: info.workflowId,
        runId: info.runId,
        intakeKey: info.firstExecutionRunId,
        stage: 'SCREENING',
        approvalState: 'NONE',
        mode,
        lead: { ...lead0, name: clean(input.lead?.name, 500), company: clean(input.lead?.company, 500), title: clean(input.lead?.title, 500), source: clean(input.lead?.source, 500) },
        sender: input.sender ?? '',
        slots: [],
        facts: [],
        refusals: [],
        refusalCount: 0,
        history: [],
      };
  let seq = carry?.seq ?? 0;
  let refusalCount = carry?.refusalCount ?? 0;
  const inbox: Inbound[] = [];
  const requestIds = carry?.requestIds.slice(-KEEP_REQUEST_IDS) ?? [];
  const seenRequests = new Set(requestIds);
  let gateOpen = Boolean(carry);
  let decided = false;

  const now = () => new Date().toISOString();
  const receive = (signal: SignalName, payload: unknown) => {
    const msg = inbound(signal, payload, now(), !gateOpen);
    const id = clean(msg.payload.requestId, 100);
    if (id) {
      if (seenRequests.has(id)) return; // a retried API call: already queued or handled
      seenRequests.add(id);
      requestIds.push(id);
      if (requestIds.length > KEEP_REQUEST_IDS) seenRequests.delete(requestIds.shift()!);
    }
    inbox.push(msg);
  };
  setHandler(approveSignal, (payload) => receive('approve', payload));
  setHandler(rejectSignal, (payload) => receive('reject', payload));
  setHandler(editSignal, (payload) => receive('edit', payload));
  setHandler(statusQuery, () => status);

  const note = (step: string, outcome: string, detail?: string) => status.history.push({ at: now(), step, outcome, ...(detail ? { detail } : {}) });

  const signature = () => [status.stage, status.approvalState, status.lead.domain, status.owner ? (status.owner.email ?? status.owner.id) : undefined].join('|');
  let indexed = carry ? signature() : '';
  /** Moves to a stage: search attributes now, the stamp for the activity that makes it durable. */
  const enter = (stage: Stage, approval: ApprovalStateValue = status.approvalState): ProgressStamp => {
    status.stage = stage;
    status.approvalState = approval;
    const owner = status.owner ? (status.owner.email ?? status.owner.id) : undefined;
    if (signature() !== indexed) {
      indexed = signature();
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

  let crmIds: CrmIds | undefined = carry?.crm;
  let draft: DraftContent | undefined = carry?.draft;
  let ref: Pick<DraftRef, 'draftId'> | undefined = carry ? { draftId: carry.draftId } : undefined;
  let taskId: string | undefined = carry?.taskId;

  const gateView = (): GateView => ({ open: gateOpen, decided: decided ? status.decision?.outcome : undefined, version: status.draft?.version ?? 0 });
  const decisionSubject = (): DecisionSubject => ({
    workflowId: info.workflowId,
    draft: draft!,
    owner: status.owner ? { id: status.owner.id, email: status.owner.email } : undefined,
    domain: status.lead.domain,
  });

  /** Refusals not yet recorded: written in one activity call per batch. */
  let pending: Refusal[] = [];

  try {
    if (carry) return await afterDecision(await runGate(carry.deadlineMs));

    // 1. Screen
    const screened = await store.intakeScreen(enter('RESOLVING'), {
      lead: input.lead,
      sender: input.sender,
      mode: input.mode,
      approvalTimeoutMs: durationMs(input.approvalTimeout),
    });
    // Unset inputs take the deployment's configuration; the mode is the deployment's, narrowed at most.
    status.sender = screened.defaults.sender;
    mode = status.mode = screened.effectiveMode ?? (input.mode === 'send_on_approval' || input.mode === 'draft_only' ? input.mode : screened.defaults.mode);
    if (screened.modeNarrowed) note('mode', 'narrowed', 'this deployment does not send: the intake runs draft_only');
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
    const crm = resolved.crm;
    crmIds = { ownerId: crm.owner?.id, contactId: crm.contact.id, companyId: crm.company?.id };
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
        ownerId: crmIds.ownerId,
        contactId: crmIds.contactId,
        companyId: crmIds.companyId,
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
    const created = await providers.intakeCreateDraft(enter('DRAFTING'), { draft, factsUsed });
    if ('priorSend' in created) {
      // This run replaces one (a reset) whose email already went out, or may have: nothing more is sent.
      const end: Stage = created.priorSend === 'sent' ? 'SENT' : 'NEEDS_HUMAN';
      status.reason =
        created.priorSend === 'sent'
          ? 'this intake already sent its email before the workflow was reset; nothing more is sent'
          : 'before the workflow was reset, Gmail was asked to send this intake\'s email and the answer was lost: check Sent in Gmail';
      note('draft', `already_${created.priorSend}`);
      status.approvalState = 'APPROVED';
      await recordPending(end);
      return finish(end, status.reason);
    }
    ref = created;
    setDraftView(draft, created, factsUsed);
    note('draft', created.created ? 'created' : created.rewritten ? 'rewritten' : 'found_existing', `v1 ${created.draftId}`);

    // 7. HubSpot task and note
    const deadlineMs = Date.now() + timeoutMs;
    const deadline = new Date(deadlineMs).toISOString();
    const who = { email: lead.email, name: writerContext.prospect.name, company: status.lead.company };
    enter('RECORDING');
    ({ taskId } = await providers.intakeCreateTask(stamp(), {
      subject: draft.subject,
      prospect: who,
      deadline,
      ownerId: crmIds.ownerId,
      contactId: crmIds.contactId,
      companyId: crmIds.companyId,
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
      ownerId: crmIds.ownerId,
      contactId: crmIds.contactId,
      companyId: crmIds.companyId,
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
    return await afterDecision(await runGate(deadlineMs));
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
      if (!patched(APPROVAL_INTEGRITY)) {
        const decision = await handleLegacy(inbox.shift()!);
        if (decision) return decision;
        continue;
      }
      const decision = await decideBatch(inbox.splice(0, GATE_BATCH));
      if (decision) return decision;
      const { historyLength, historySize, continueAsNewSuggested } = workflowInfo();
      if (continueAsNewSuggested || historyLength > GATE_HISTORY_EVENTS || historySize > GATE_HISTORY_BYTES) await continueGate(deadlineMs);
    }
  }

  /**
   * Signals that came in together: screened by the gate's rules, the survivors
   * authorised in one call, then acted on in arrival order. A state change
   * (an applied edit) re-screens those behind it; after a decision the rest
   * are refused as late.
   */
  async function decideBatch(batch: Inbound[]): Promise<Decision | undefined> {
    const screened = batch.map((msg) => screenSignal(msg, gateView()));
    const candidates = screened.flatMap((s, i) => (s.ok ? [{ i, request: s.request }] : []));
    const verdicts = new Map<number, Verdict>();
    for (const chunk of chunks(candidates, (c) => batch[c.i]!.bytes)) {
      const judged = await store.intakeAuthorise(stamp(), { subject: decisionSubject(), requests: chunk.map((c) => c.request) });
      chunk.forEach((c, k) => verdicts.set(c.i, judged[k]!));
    }
    for (let i = 0; i < batch.length; i++) {
      const msg = batch[i]!;
      const was = screened[i]!;
      const is = was.ok ? screenSignal(msg, gateView()) : was;
      if (!is.ok) {
        refuse(msg, is.reason);
        continue;
      }
      const verdict = verdicts.get(i)!;
      if (!verdict.ok) {
        refuse(msg, verdict.reason);
        continue;
      }
      await flushRefusals();
      const decision = await act(msg, is.request, verdict);
      if (decision) {
        for (const late of batch.slice(i + 1)) refuse(late, `the intake was already decided (${decision.outcome})`);
        await flushRefusals();
        return decision;
      }
    }
    await flushRefusals();
    return undefined;
  }

  /** An authorised decision: reject, edit, or approve (with its edit applied first). */
  async function act(msg: Inbound, request: DecisionRequest, verdict: Extract<Verdict, { ok: true }>): Promise<Decision | undefined> {
    const by = verdict.approver;
    const requestId = clean(msg.payload.requestId, 100);
    const reason = clean(msg.payload.reason, 1000);
    const current = status.draft!.version;
    if (request.action === 'reject') {
      const decision: Decision = { outcome: 'rejected', by, version: request.version ?? current, reason, at: msg.at, requestId, signed: verdict.signed };
      await store.intakeRecord(enter('CLOSING', 'REJECTED'), {
        audit: {
          kind: 'decision',
          action: 'reject',
          outcome: 'rejected',
          actor: by,
          details: { version: decision.version ?? null, currentVersion: current, reason: reason ?? null, requestId: requestId ?? null, signed: verdict.signed, keyId: verdict.keyId ?? null },
        },
        patch: { reason, data: { decision } },
      });
      note('gate', 'rejected', `by ${by}`);
      return decision;
    }
    if (request.edit && !(await applyEdit(msg, by, request.edit, verdict.contentHash))) return undefined;
    if (request.action === 'edit') return undefined;
    const d = status.draft!;
    const decision: Decision = { outcome: 'approved', by, version: d.version, reason, at: msg.at, requestId, contentHash: verdict.contentHash, signed: verdict.signed };
    await store.intakeRecordApproval(enter(mode === 'send_on_approval' ? 'SENDING' : 'CLOSING', 'APPROVED'), {
      draft: draft!,
      approver: by,
      contentHash: verdict.contentHash,
      reason,
      requestId,
      signed: verdict.signed,
      keyId: verdict.keyId,
    });
    note('gate', 'approved', `v${d.version} by ${by}`);
    return decision;
  }

  /** Writes an authorised edit to Gmail as the next version; false (and refused on the record) when it cannot be. */
  async function applyEdit(msg: Inbound, by: string, edit: { subject?: string; body?: string }, expectedHash?: string): Promise<boolean> {
    let result;
    try {
      result = await providers.intakeReviseDraft(stamp(), {
        draftId: ref!.draftId,
        base: draft!,
        subject: edit.subject,
        body: edit.body,
        editor: by,
        requestId: clean(msg.payload.requestId, 100),
        factsUsed: status.draft!.factsUsed,
      });
    } catch (err) {
      // Gmail refused the edit for good (e.g. the draft was deleted there): the gate stays open.
      if (!(err instanceof ActivityFailure)) throw err;
      await refuseNow(msg, `edit failed: ${describeFailure(err)}`);
      return false;
    }
    if (!result.applied) {
      await refuseNow(msg, `edit refused: ${result.problems.join('; ')}`);
      return false;
    }
    if (expectedHash && result.ref.contentHash !== expectedHash) {
      await refuseNow(msg, 'the edited draft in Gmail is not the content that was authorised');
      return false;
    }
    draft = result.draft;
    ref = result.ref;
    setDraftView(draft, result.ref, status.draft!.factsUsed, by);
    note('edit', 'applied', `v${draft.version} by ${by}`);
    return true;
  }

  // ---- refusals: kept small, recorded in batches -------------------------------------------

  function refuse(msg: Inbound, reason: string): void {
    const refusal = refusalOf(msg, reason);
    pending.push(refusal);
    status.refusals = [...status.refusals.slice(-(RECENT_REFUSALS - 1)), refusal];
    status.refusalCount = ++refusalCount;
  }

  async function flushRefusals(): Promise<void> {
    while (pending.length) {
      const first = refusalCount - pending.length + 1;
      const refusals = pending.splice(0, REFUSALS_PER_RECORD);
      await store.intakeRecordRefusals(stamp(), { refusals, first });
    }
  }

  /** Refuses one signal and records it before anything else happens. */
  async function refuseNow(msg: Inbound, reason: string): Promise<void> {
    if (!patched(APPROVAL_INTEGRITY)) return legacyRefuse(msg, msg.actor, reason);
    refuse(msg, reason);
    await flushRefusals();
  }

  /** Signals left when no gate will look at them (a screened-out lead, a decided intake): refused on the record. */
  async function refuseRemaining(reason: string): Promise<void> {
    if (!inbox.length) return;
    if (!patched(APPROVAL_INTEGRITY)) {
      while (inbox.length) {
        const msg = inbox.shift()!;
        await legacyRefuse(msg, legacyActor(msg), reason);
      }
      return;
    }
    while (inbox.length) {
      for (const msg of inbox.splice(0, GATE_BATCH)) refuse(msg, reason);
      await flushRefusals();
    }
  }

  /**
   * A long wait at the gate (a flood of signals) continues in a fresh run with
   * the gate's state, once nothing waits to be judged. Temporal refuses a
   * continue-as-new while new signals are arriving (and the run is replayed
   * each time it is refused), so under a flood this run keeps judging and
   * hands over at the first quiet moment; refusals that hold whatever comes
   * next are recorded first, so a quiet moment is enough.
   */
  async function continueGate(deadlineMs: number): Promise<void> {
    for (const msg of inbox.splice(0)) {
      const s = screenSignal(msg, gateView());
      if (!s.ok && s.lasting) refuse(msg, s.reason);
      else inbox.push(msg);
    }
    await flushRefusals();
    if (inbox.length) return;
    const next: GateCarry = {
      status: { ...status, history: status.history.slice(-KEEP_NOTES) },
      draft: draft!,
      draftId: ref!.draftId,
      taskId,
      crm: crmIds!,
      deadlineMs,
      seq,
      refusalCount,
      requestIds: requestIds.slice(-KEEP_REQUEST_IDS),
    };
    await continueAsNew<typeof prospectIntake>({ ...input, resume: next });
  }

  async function recordPending(end: Stage): Promise<void> {
    await refuseRemaining(`no draft is awaiting approval (intake ends ${end})`);
    await store.intakeRecord(enter(end), { audit: { kind: 'step', action: 'end', outcome: end.toLowerCase(), details: { reason: status.reason ?? null } }, patch: { reason: status.reason }, finalStage: end });
  }

  // ---- runs recorded before APPROVAL_INTEGRITY replay through these ----------------------------

  function legacyActor(msg: Inbound): string {
    return clean(msg.signal === 'edit' ? msg.payload.editor : msg.payload.approver, 500) ?? 'unknown';
  }

  async function legacyRefuse(msg: Inbound, by: string, reason: string): Promise<void> {
    status.refusals.push({ at: msg.at, signal: msg.signal, by, reason });
    note(msg.signal, 'refused', reason);
    await store.intakeRecord(stamp(), { audit: { key: `refusal:${status.refusals.length}`, kind: 'signal', action: msg.signal, outcome: 'refused', actor: by, details: { reason } } });
  }

  async function handleLegacy(msg: Inbound): Promise<Decision | undefined> {
    const p = msg.payload;
    const current = status.draft!.version;
    const by = legacyActor(msg);
    if (msg.signal === 'reject') {
      const decision: Decision = { outcome: 'rejected', by, version: typeof p.version === 'number' ? p.version : current, reason: clean(p.reason, 500), at: msg.at };
      await store.intakeRecord(enter('CLOSING', 'REJECTED'), { audit: { kind: 'decision', action: 'reject', outcome: 'rejected', actor: by }, patch: { data: { decision } } });
      return decision;
    }
    const version = typeof p.version === 'string' && /^\d+$/.test(p.version) ? Number(p.version) : p.version;
    const edit = { subject: clean(p.subject, 5000, false), body: clean(p.body, 5000, false) };
    const refusal = msg.early
      ? 'it arrived before the draft was ready for approval'
      : by === 'unknown'
        ? 'the payload names no approver'
        : version !== current
          ? `draft version ${String(version)} is not the current version ${current}`
          : msg.signal === 'edit' && edit.subject === undefined && edit.body === undefined
            ? 'an edit needs a subject or a body'
            : undefined;
    if (refusal) return void (await legacyRefuse(msg, by, refusal));
    if ((edit.subject !== undefined || edit.body !== undefined) && !(await applyEdit(msg, by, edit))) return undefined;
    if (msg.signal === 'edit') return undefined;
    const d = status.draft!;
    const decision: Decision = { outcome: 'approved', by, version: d.version, at: msg.at };
    await store.intakeRecordApproval(enter(mode === 'send_on_approval' ? 'SENDING' : 'CLOSING', 'APPROVED'), { draft: draft!, approver: by, contentHash: d.contentHash ?? '' });
    return decision;
  }

  // ---- after the decision -------------------------------------------------------------------

  async function afterDecision(decision: Decision): Promise<IntakeResult> {
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
  }

  async function sendApproved(decision: Decision): Promise<IntakeResult> {
    const d = status.draft!;
    try {
      const sent = await sender.intakeSendDraft(stamp(), { version: d.version, draftId: d.draftId!, messageId: d.messageId, contentHash: decision.contentHash });
      status.sent = { gmailMessageId: sent.gmailMessageId, at: now(), version: d.version };
      if (sent.recorded === false) {
        await durableStore.intakeRecordSent(stamp(), { gmailMessageId: sent.gmailMessageId, alreadySent: sent.alreadySent, version: d.version, messageId: d.messageId });
      }
      note('send', sent.alreadySent ? 'found_sent' : 'sent', `v${d.version}`);
      await closeOut('SENT', decision, { gmailMessageId: sent.gmailMessageId });
      return finish('SENT');
    } catch (err) {
      const failure = err instanceof ActivityFailure && err.cause instanceof ApplicationFailure ? err.cause : undefined;
      if (!failure || !(SEND_REFUSALS as readonly string[]).includes(failure.type ?? '')) throw err;
      // The send step refused on its own checks, or cannot tell what Gmail did: a person decides what happens next.
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
      ownerId: crmIds?.ownerId,
      contactId: crmIds?.contactId,
      companyId: crmIds?.companyId,
      note: why,
    });
    note('close', end.toLowerCase());
    // Signals after the decision change nothing; they are refused on the record.
    await refuseRemaining(`the intake was already decided (${decision.outcome})`);
  }

  async function fail(err: unknown): Promise<IntakeResult> {
    // Continuing at the gate is how a run hands over, not a failure.
    if (err instanceof ContinueAsNew) throw err;
    const cancelled = isCancellation(err);
    const reason = cancelled ? 'cancelled' : describeFailure(err);
    status.reason = reason;
    note('failed', cancelled ? 'cancelled' : 'error', reason);
    // Recording the failure must happen even when the workflow itself is being cancelled.
    await CancellationScope.nonCancellable(async () => {
      if (decided && status.decision?.outcome === 'approved' && status.sent) {
        // The email went out; only the close-out failed. Keep SENT, say what is missing.
        await durableStore.intakeRecord(enter('SENT', 'APPROVED'), { audit: { kind: 'step', action: 'close', outcome: 'incomplete', details: { reason } }, patch: { reason: `close-out incomplete: ${reason}` }, finalStage: 'SENT' });
        return;
      }
      if (decided && status.decision?.outcome === 'approved' && mode === 'send_on_approval' && patched(APPROVAL_INTEGRITY)) {
        // Only a send that provably never reached Gmail may end FAILED (which frees the re-contact window).
        const sendState = await durableStore.intakeSendState(stamp());
        if (sendState === 'sent' || sendState === 'sending') {
          status.reason =
            sendState === 'sent'
              ? `sent; close-out incomplete: ${reason}`
              : `the send's outcome is unknown (Gmail was asked to send; ${reason}): check Sent in Gmail before sending again`;
          const end: Stage = sendState === 'sent' ? 'SENT' : 'NEEDS_HUMAN';
          await durableStore.intakeRecord(enter(end, 'APPROVED'), { audit: { kind: 'step', action: 'close', outcome: 'incomplete', details: { reason: status.reason } }, patch: { reason: status.reason }, finalStage: end });
          return;
        }
      }
      await store.intakeRecord(enter('FAILED', gateOpen && !decided ? 'NONE' : status.approvalState), {
        audit: { kind: 'step', action: 'fail', outcome: cancelled ? 'cancelled' : 'failed', details: { reason } },
        patch: { reason },
        finalStage: 'FAILED',
      });
    });
    if (cancelled) throw err;
    return finish(status.stage, status.reason);
  }

  function setDraftView(d: DraftContent, r: Pick<DraftRef, 'draftId' | 'threadId' | 'contentHash'> | undefined, factsUsed: string[], editedBy?: string) {
    status.draft = {
      version: d.version,
      subject: d.subject,
      body: d.body,
      draftId: r?.draftId,
      messageId: d.messageId,
      threadId: r?.threadId || d.reply?.threadId,
      replying: Boolean(d.reply),
      factsUsed,
      to: d.to,
      from: d.from,
      ...(d.reply ? { reply: d.reply } : {}),
      ...(r?.contentHash ? { contentHash: r.contentHash } : {}),
      ...(editedBy ? { editedBy } : {}),
    };
  }
}

/** Consecutive groups of at most AUTHORISE_CHUNK items and AUTHORISE_CHUNK_BYTES (one item may exceed it alone). */
function chunks<T>(items: T[], size: (item: T) => number): T[][] {
  const out: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const n = size(item);
    if (current.length && (current.length >= AUTHORISE_CHUNK || bytes + n > AUTHORISE_CHUNK_BYTES)) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += n;
  }
  if (current.length) out.push(current);
  return out;
}

function describeFailure(err: unknown): string {
  if (err instanceof ActivityFailure) {
    const cause = err.cause as { message?: string } | undefined;
    return `${err.activityType ?? 'activity'} failed: ${cause?.message ?? err.message}`.slice(0, 500);
  }
  return String((err as Error)?.message ?? err).slice(0, 500);
}
