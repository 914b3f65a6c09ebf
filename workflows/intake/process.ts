import { ActivityFailure, ApplicationFailure, CancellationScope, ContinueAsNew, isCancellation, patched, setHandler } from '@temporalio/workflow';
import type { ResolvedCrm } from '../../activities/intake/crm.js';
import type { EmailContext } from '../../activities/intake/gmail.js';
import { draftMessageId, type DraftContent } from '../../lib/domain/draft.js';
import { senderFacts, threadFacts } from '../../lib/domain/grounding-facts.js';
import type { SenderProfile } from '../../activities/intake/index.js';
import type { ScreenedLead } from '../../activities/intake/screening.js';
import type { WriteOutcome, WriterContext } from '../../activities/intake/writer.js';
import {
  durationMs,
  SEND_REFUSALS,
  type ApprovalStateValue,
  type Decision,
  type IntakeInput,
  type IntakeResult,
  type Stage,
} from '../../lib/domain/prospect.js';
import { durableStore, providers, sender, store, writer } from './activities.js';
import { APPROVAL_INTEGRITY, ApprovalGate } from './approval.js';
import { describeFailure } from './failures.js';
import { statusQuery } from './messages.js';
import { asIntakeInput, IntakeRun } from './run.js';

/**
 * Workflow 1, prospect intake: screen → resolve in HubSpot → Gmail context →
 * calendar slots → write (grounded) → Gmail draft → HubSpot task and note →
 * the approval gate → draft stays approved (draft_only) or is sent
 * (send_on_approval) → task closed, decision note.
 *
 * The gate (approval.ts) takes three signals with JSON payloads
 * (messages.ts, docs/intake.md), so any Temporal client can drive it. Each
 * signal is screened by the gate's rules (gate.ts: on time, current version,
 * small), then judged by intakeAuthorise (a registered approver; in production
 * a signed token binding the exact content), and only then acted on. The send
 * step itself checks that the deployment sends and that Gmail holds exactly
 * the approved content.
 */
export async function prospectIntake(raw: IntakeInput): Promise<IntakeResult> {
  const run = new IntakeRun(asIntakeInput(raw));
  const gate = new ApprovalGate(run);
  setHandler(statusQuery, () => run.status);
  const resume = run.input.resume;
  try {
    if (resume) return await afterDecision(run, gate, await gate.decision(resume.deadlineMs));

    const lead = await screen(run);
    if (!lead) return await end(run, gate, 'SKIPPED');
    const { crm, profile } = await resolveInCrm(run, lead);
    const context = await gatherContext(run, lead);
    await proposeSlots(run, lead, crm, profile);
    const written = await write(run, lead, crm, profile, context);
    if (!written.ok) return await handToPerson(run, gate, lead, written);
    const created = await createDraft(run, lead, profile, context, written);
    if (created !== 'created') return await endAfterEarlierSend(run, gate, created);
    const deadlineMs = await recordForOwner(run);
    await openGate(run, gate, deadlineMs);
    return await afterDecision(run, gate, await gate.decision(deadlineMs));
  } catch (err) {
    return await fail(run, gate, err);
  }
}

const MEETING_MINUTES = 30;

// ---- the steps, in order -------------------------------------------------------------------

/** 1. Screen: the deployment's defaults, the mode it allows, and whether this lead may be written to today. */
async function screen(run: IntakeRun): Promise<ScreenedLead | undefined> {
  const { input, status } = run;
  const screened = await store.intakeScreen(run.enter('RESOLVING'), {
    lead: input.lead,
    sender: input.sender,
    mode: input.mode,
    approvalTimeoutMs: durationMs(input.approvalTimeout),
  });
  // Unset inputs take the deployment's configuration; the mode is the deployment's, narrowed at most.
  status.sender = screened.defaults.sender;
  run.mode = status.mode = screened.effectiveMode ?? (input.mode === 'send_on_approval' || input.mode === 'draft_only' ? input.mode : screened.defaults.mode);
  if (screened.modeNarrowed) run.note('mode', 'narrowed', 'this deployment does not send: the intake runs draft_only');
  run.timeoutMs = durationMs(input.approvalTimeout) ?? screened.defaults.approvalTimeoutMs;
  if (!screened.accepted) {
    run.note('screen', 'skipped', `${screened.reason}: ${screened.detail}`);
    status.reason = `${screened.reason}: ${screened.detail}`;
    return undefined;
  }
  const lead = screened.lead;
  status.lead = { email: lead.email, domain: lead.domain, name: lead.name, company: lead.company, title: lead.title, source: lead.source };
  run.note('screen', 'accepted');
  return lead;
}

/** 2. The HubSpot contact, company and owner; who the sender is. */
async function resolveInCrm(run: IntakeRun, lead: ScreenedLead): Promise<{ crm: ResolvedCrm; profile: SenderProfile }> {
  const { status } = run;
  const resolved = await providers.intakeResolveCrm(run.stamp(), { lead, sender: status.sender });
  const crm = resolved.crm;
  run.crm = { ownerId: crm.owner?.id, contactId: crm.contact.id, companyId: crm.company?.id };
  status.owner = crm.owner;
  status.crm = { contactId: crm.contact.id, companyId: crm.company?.id };
  status.facts = crm.facts;
  status.lead.company = status.lead.company ?? crm.company?.name;
  run.note('resolve', crm.contact.created ? 'contact_created' : 'contact_found', crm.company ? `company ${crm.company.name ?? crm.company.id}` : 'no company');
  return { crm, profile: resolved.sender };
}

/** 3. The conversation so far in Gmail: an active thread makes the email a reply. */
async function gatherContext(run: IntakeRun, lead: ScreenedLead): Promise<EmailContext> {
  const context = await providers.intakeGatherContext(run.enter('GATHERING_CONTEXT'), { email: lead.email });
  run.note('context', context.reply ? 'reply_in_thread' : `${context.threadCount} thread(s)`);
  return context;
}

/** 4. Three free meeting slots from the sender's calendar. */
async function proposeSlots(run: IntakeRun, lead: ScreenedLead, crm: ResolvedCrm, profile: SenderProfile): Promise<void> {
  run.status.slots = await providers.intakeProposeSlots(run.enter('FINDING_SLOTS'), { sender: profile, prospectTimeZone: lead.timeZone ?? crm.contact.timeZone });
  run.note('slots', `${run.status.slots.length} proposed`);
}

/**
 * 5. The email, judged: one regeneration with the problems as feedback, then a person.
 * The evidence is HubSpot's facts, what was said in the latest Gmail thread,
 * and what the sender says about itself; the prospect's fields only address.
 */
async function write(run: IntakeRun, lead: ScreenedLead, crm: ResolvedCrm, profile: SenderProfile, context: EmailContext): Promise<WriteOutcome & { context: WriterContext }> {
  const { status } = run;
  const thread = context.latest?.messages.map((m) => ({ from: m.from, at: m.at, text: m.text }));
  status.facts = [...crm.facts, ...threadFacts(thread), ...senderFacts(profile)];
  const writerContext: WriterContext = {
    prospect: {
      name: lead.name ?? ([crm.contact.firstName, crm.contact.lastName].filter(Boolean).join(' ') || undefined),
      email: lead.email,
      company: status.lead.company,
      title: crm.contact.jobTitle ?? lead.title,
      timeZone: lead.timeZone ?? crm.contact.timeZone,
    },
    sender: { name: profile.name, company: profile.company, email: profile.email },
    facts: status.facts,
    slots: status.slots,
    meeting: { minutes: MEETING_MINUTES },
    ...(context.reply ? { reply: { threadId: context.reply.threadId, subject: context.reply.subject } } : {}),
    ...(thread ? { thread } : {}),
    lead: { notes: lead.notes, source: lead.source },
  };
  run.enter('WRITING');
  let attempts = 1;
  let written = await writer.intakeWriteDraft(run.stamp(), { context: writerContext, attempt: 1 });
  run.note('write', written.ok ? 'grounded' : 'rejected', written.problems.join('; ') || undefined);
  if (!written.ok) {
    attempts = 2;
    // The activity's own structured findings, not its sentences for people: the retry prompt states them in our words.
    written = await writer.intakeWriteDraft(run.stamp(), { context: writerContext, attempt: 2, feedback: written.feedback ?? { rejections: written.rejections ?? [], unknownFacts: false } });
    run.note('write', written.ok ? 'grounded' : 'rejected', written.problems.join('; ') || undefined);
  }
  // Histories recorded before rejections were kept replay with outcomes that lack them.
  status.grounding = { attempts, problems: written.problems, rejections: written.rejections ?? [] };
  return { ...written, context: writerContext };
}

/** Twice ungrounded: a person writes this one; the owner gets a task and a note saying why. */
async function handToPerson(run: IntakeRun, gate: ApprovalGate, lead: ScreenedLead, written: WriteOutcome & { context: WriterContext }): Promise<IntakeResult> {
  const { status } = run;
  status.reason = `grounding: ${written.problems.join('; ')}`;
  await providers.intakeNeedsHuman(run.enter('NEEDS_HUMAN'), {
    prospect: { email: lead.email, name: written.context.prospect.name, company: status.lead.company },
    problems: written.problems,
    rejections: written.rejections ?? [],
    ownerId: run.crm!.ownerId,
    contactId: run.crm!.contactId,
    companyId: run.crm!.companyId,
  });
  run.note('needs_human', 'handed_over');
  return end(run, gate, 'NEEDS_HUMAN');
}

/**
 * 6. The Gmail draft (version 1). 'sent' or 'sending' when this run replaces
 * one (a reset) whose email already went out, or may have.
 */
async function createDraft(
  run: IntakeRun,
  lead: ScreenedLead,
  profile: SenderProfile,
  context: EmailContext,
  written: WriteOutcome & { context: WriterContext },
): Promise<'created' | 'sent' | 'sending'> {
  const draft: DraftContent = {
    to: { address: lead.email, name: written.context.prospect.name },
    from: { address: profile.email, name: profile.name },
    subject: written.subject,
    body: written.body,
    messageId: draftMessageId(run.info.firstExecutionRunId, 1, profile.email),
    intakeKey: run.info.firstExecutionRunId,
    version: 1,
    ...(context.reply ? { reply: { threadId: context.reply.threadId, inReplyTo: context.reply.inReplyTo, references: context.reply.references } } : {}),
  };
  run.showDraft(draft, undefined, written.factsUsed);
  const created = await providers.intakeCreateDraft(run.enter('DRAFTING'), { draft, factsUsed: written.factsUsed });
  if ('priorSend' in created) return created.priorSend;
  run.showDraft(draft, created, written.factsUsed);
  run.note('draft', created.created ? 'created' : created.rewritten ? 'rewritten' : 'found_existing', `v1 ${created.draftId}`);
  return 'created';
}

/** A reset run whose intake's email already went out (or may have): nothing more is sent. */
async function endAfterEarlierSend(run: IntakeRun, gate: ApprovalGate, earlier: 'sent' | 'sending'): Promise<IntakeResult> {
  const { status } = run;
  status.reason =
    earlier === 'sent'
      ? 'this intake already sent its email before the workflow was reset; nothing more is sent'
      : "before the workflow was reset, Gmail was asked to send this intake's email and the answer was lost: check Sent in Gmail";
  run.note('draft', `already_${earlier}`);
  status.approvalState = 'APPROVED';
  return end(run, gate, earlier === 'sent' ? 'SENT' : 'NEEDS_HUMAN');
}

/** 7. The owner's "review and send" task and the summary note; returns the approval deadline. */
async function recordForOwner(run: IntakeRun): Promise<number> {
  const { status } = run;
  const draft = run.draft!;
  const deadlineMs = Date.now() + run.timeoutMs;
  const deadline = new Date(deadlineMs).toISOString();
  const who = { email: status.lead.email, name: draft.to.name, company: status.lead.company };
  const ids = run.crm!;
  run.enter('RECORDING');
  ({ taskId: run.taskId } = await providers.intakeCreateTask(run.stamp(), {
    subject: draft.subject,
    prospect: who,
    deadline,
    ownerId: ids.ownerId,
    contactId: ids.contactId,
    companyId: ids.companyId,
    mode: run.mode,
  }));
  status.crm!.taskId = run.taskId;
  run.note('task', 'created', run.taskId);
  const { noteId } = await providers.intakeAddNote(run.stamp(), {
    prospect: who,
    subject: draft.subject,
    version: 1,
    replying: Boolean(draft.reply),
    slots: status.slots,
    facts: status.facts,
    factsUsed: status.draft!.factsUsed,
    deadline,
    mode: run.mode,
    ownerId: ids.ownerId,
    contactId: ids.contactId,
    companyId: ids.companyId,
  });
  status.crm!.noteId = noteId;
  run.note('note', 'created', noteId);
  return deadlineMs;
}

/** 8. The gate opens: from the moment the stage says so, a signal sent by someone who saw it is on time. */
async function openGate(run: IntakeRun, gate: ApprovalGate, deadlineMs: number): Promise<void> {
  const deadline = new Date(deadlineMs).toISOString();
  run.status.approval = { deadline, timeoutMs: run.timeoutMs };
  gate.open = true;
  const awaiting = run.enter('AWAITING_APPROVAL', 'AWAITING_APPROVAL');
  // Noted before the record is written, so a status query that sees the stage also sees the gate.
  run.note('gate', 'open', `until ${deadline}`);
  await store.intakeRecord(awaiting, {
    audit: { kind: 'step', action: 'await_approval', outcome: 'open', details: { version: 1, deadline, mode: run.mode } },
    patch: { approvalDeadline: deadline },
  });
}

// ---- after the decision -------------------------------------------------------------------

async function afterDecision(run: IntakeRun, gate: ApprovalGate, decision: Decision): Promise<IntakeResult> {
  run.status.decision = decision;
  gate.decided = true;
  if (decision.outcome !== 'approved') {
    const stage: Stage = decision.outcome === 'rejected' ? 'REJECTED' : 'EXPIRED';
    await closeOut(run, gate, stage, decision);
    return run.finish(stage);
  }
  if (run.mode === 'draft_only') {
    await closeOut(run, gate, 'APPROVED', decision);
    return run.finish('APPROVED');
  }
  return send(run, gate, decision);
}

/** send_on_approval: the approved content, once; a person decides when the send step cannot. */
async function send(run: IntakeRun, gate: ApprovalGate, decision: Decision): Promise<IntakeResult> {
  const { status } = run;
  const d = status.draft!;
  try {
    const sent = await sender.intakeSendDraft(run.stamp(), { version: d.version, draftId: d.draftId!, messageId: d.messageId, contentHash: decision.contentHash });
    status.sent = { gmailMessageId: sent.gmailMessageId, at: run.now(), version: d.version };
    if (sent.recorded === false) {
      await durableStore.intakeRecordSent(run.stamp(), { gmailMessageId: sent.gmailMessageId, alreadySent: sent.alreadySent, version: d.version, messageId: d.messageId });
    }
    run.note('send', sent.alreadySent ? 'found_sent' : 'sent', `v${d.version}`);
    await closeOut(run, gate, 'SENT', decision, { gmailMessageId: sent.gmailMessageId });
    return run.finish('SENT');
  } catch (err) {
    const failure = err instanceof ActivityFailure && err.cause instanceof ApplicationFailure ? err.cause : undefined;
    if (!failure || !(SEND_REFUSALS as readonly string[]).includes(failure.type ?? '')) throw err;
    // The send step refused on its own checks, or cannot tell what Gmail did: a person decides what happens next.
    status.reason = `send refused: ${failure.message}`;
    run.note('send', 'refused', failure.message);
    await closeOut(run, gate, 'NEEDS_HUMAN', decision, undefined, status.reason);
    return run.finish('NEEDS_HUMAN', status.reason);
  }
}

/** The task closed, a decision note, the end state; signals after the decision are refused on the record. */
async function closeOut(run: IntakeRun, gate: ApprovalGate, stage: Stage, decision: Decision, sent?: { gmailMessageId: string }, why?: string): Promise<void> {
  const approval: ApprovalStateValue = decision.outcome === 'approved' ? 'APPROVED' : decision.outcome === 'rejected' ? 'REJECTED' : 'EXPIRED';
  run.status.stage = stage;
  run.status.approvalState = approval;
  await providers.intakeCloseOut(run.enter(stage, approval), {
    decision,
    mode: run.mode,
    sent,
    taskId: run.taskId,
    draftId: run.draftId,
    ownerId: run.crm?.ownerId,
    contactId: run.crm?.contactId,
    companyId: run.crm?.companyId,
    note: why,
  });
  run.note('close', stage.toLowerCase());
  await gate.refuseRemaining(`the intake was already decided (${decision.outcome})`);
}

/** An end without a decision (screened out, handed to a person): pending signals refused, the end recorded. */
async function end(run: IntakeRun, gate: ApprovalGate, stage: Stage): Promise<IntakeResult> {
  const { status } = run;
  await gate.refuseRemaining(`no draft is awaiting approval (intake ends ${stage})`);
  await store.intakeRecord(run.enter(stage), { audit: { kind: 'step', action: 'end', outcome: stage.toLowerCase(), details: { reason: status.reason ?? null } }, patch: { reason: status.reason }, finalStage: stage });
  return run.finish(stage, status.reason);
}

/**
 * A step that kept failing past its retries, or a cancellation. Recorded,
 * then reported to Temporal as a failed workflow (type IntakeFailed), so the
 * Web UI's "Failed" shows it. Once an email went out the intake never ends
 * FAILED, and after an approval it ends FAILED (which frees the re-contact
 * window) only when the send provably never reached Gmail.
 */
async function fail(run: IntakeRun, gate: ApprovalGate, err: unknown): Promise<IntakeResult> {
  // Continuing at the gate is how a run hands over, not a failure.
  if (err instanceof ContinueAsNew) throw err;
  const { status } = run;
  const cancelled = isCancellation(err);
  const reason = cancelled ? 'cancelled' : describeFailure(err);
  status.reason = reason;
  run.note('failed', cancelled ? 'cancelled' : 'error', reason);
  let failed = true;
  // Recording the failure must happen even when the workflow itself is being cancelled.
  await CancellationScope.nonCancellable(async () => {
    const approved = gate.decided && status.decision?.outcome === 'approved';
    if (approved && status.sent) {
      // The email went out; only the close-out failed. Keep SENT, say what is missing.
      failed = false;
      await durableStore.intakeRecord(run.enter('SENT', 'APPROVED'), { audit: { kind: 'step', action: 'close', outcome: 'incomplete', details: { reason } }, patch: { reason: `close-out incomplete: ${reason}` }, finalStage: 'SENT' });
      return;
    }
    if (approved && run.mode === 'send_on_approval' && patched(APPROVAL_INTEGRITY)) {
      const sendState = await durableStore.intakeSendState(run.stamp());
      if (sendState === 'sent' || sendState === 'sending') {
        failed = false;
        status.reason =
          sendState === 'sent'
            ? `sent; close-out incomplete: ${reason}`
            : `the send's outcome is unknown (Gmail was asked to send; ${reason}): check Sent in Gmail before sending again`;
        const stage: Stage = sendState === 'sent' ? 'SENT' : 'NEEDS_HUMAN';
        await durableStore.intakeRecord(run.enter(stage, 'APPROVED'), { audit: { kind: 'step', action: 'close', outcome: 'incomplete', details: { reason: status.reason } }, patch: { reason: status.reason }, finalStage: stage });
        return;
      }
    }
    await store.intakeRecord(run.enter('FAILED', gate.open && !gate.decided ? 'NONE' : status.approvalState), {
      audit: { kind: 'step', action: 'fail', outcome: cancelled ? 'cancelled' : 'failed', details: { reason } },
      patch: { reason },
      finalStage: 'FAILED',
    });
  });
  if (cancelled) throw err;
  const result = run.finish(status.stage, status.reason);
  if (failed && patched(INTAKE_FAILS)) throw ApplicationFailure.nonRetryable(`intake failed: ${reason}`, 'IntakeFailed', result);
  return result;
}

/** Marks runs that report a failed intake to Temporal as a failed workflow instead of completing. */
const INTAKE_FAILS = 'intake-fails';
