import type { ActivityDeps } from '../deps.js';
import type { Decision, Fact, Refusal, SendMode, Slot, Stage } from '../../lib/domain/prospect.js';
import { effectKey } from '../../lib/domain/prospect.js';
import { authoriseDecision, type DecisionRequest, type DecisionSubject, type Verdict } from '../../lib/domain/approvals.js';
import { contentOfDraft, draftHash, fieldHashes } from '../../lib/domain/approval-content.js';
import { draftView, editDraft, type DraftEdit } from '../../lib/domain/draft.js';
import { effectiveSendMode, sendRefusal } from '../../lib/domain/send-policy.js';
import { appendAuditBatch } from '../../lib/store/audit.js';
import { markSent, recordApproval, sendRecord, sendState, type SendState } from '../../lib/store/sends.js';
import { createGmail, createCalendar, createGoogleAuth, type Calendar, type Gmail } from '../providers/google.js';
import { createHubspot } from '../providers/hubspot.js';
import { createOpenAI } from '../providers/openai.js';
import { proposeSlots } from './slots.js';
import { createCrmRecords, type CrmRecords, type LeadForCrm, type ResolvedCrm } from './crm.js';
import { writeEmail, type WriteOutcome, type WriterContext, type WriterFeedback } from './writer.js';
import type { Rejection } from '../../lib/domain/grounding.js';
import { createGmailDrafts, type DraftContent, type DraftRef, type EmailContext, type GmailDrafts, type SendOutcome } from './gmail.js';
import { withHeartbeat } from '../providers/failures.js';
import { appendIntakeAudit, commitStep, intakeAuditEvent, writeReadModel, type AuditEntry, type ProgressStamp, type ReadModelPatch } from '../../lib/store/prospects.js';
import { findEffect } from '../../lib/store/effects.js';
import { findApprover } from '../../lib/store/approvers.js';
import { readSettings } from '../../lib/store/settings.js';
import { ApplicationFailure } from '@temporalio/common';
import { inTransaction } from '../../lib/store/db.js';
import { screenLead, type ScreenInput, type ScreenResult, type ScreenedLead } from './screening.js';
import { recordFinalStage } from '../../lib/store/intakes.js';

/**
 * The prospect intake's activities: each is one step of the workflow, calls
 * the real provider SDK, and ends by committing its audit row and read-model
 * change. Every one is safe to retry (see the modules they call for how).
 */

export interface SenderProfile {
  email: string;
  name: string;
  company: string;
  /** What the sender sells, as the operator wrote it in the intake settings: the `sender.product` fact. */
  pitch?: string;
  timeZone: string;
  workingHours: { start: string; end: string };
}

export interface IntakeLinks {
  inbox: string;
  temporal: string;
}

export interface DraftRecordInput {
  draft: DraftContent;
  factsUsed: string[];
}

export interface TaskInput {
  subject: string;
  prospect: { email: string; name?: string; company?: string };
  deadline: string;
  ownerId?: string;
  contactId: string;
  companyId?: string;
  mode: string;
}

export interface NoteInput {
  prospect: { email: string; name?: string; company?: string };
  subject: string;
  version: number;
  replying: boolean;
  slots: Slot[];
  facts: Fact[];
  factsUsed: string[];
  deadline: string;
  mode: string;
  ownerId?: string;
  contactId: string;
  companyId?: string;
}

export interface CloseOutInput {
  decision: Decision;
  mode: string;
  sent?: { gmailMessageId: string };
  taskId?: string;
  draftId?: string;
  ownerId?: string;
  contactId?: string;
  companyId?: string;
  /** Why the close-out happened when it is not a decision (send refused, failure). */
  note?: string;
}

export interface NeedsHumanInput {
  prospect: { email: string; name?: string; company?: string };
  problems: string[];
  /** The last draft's rejected sentences (absent in intakes started before they were kept). */
  rejections?: Rejection[];
  ownerId?: string;
  contactId: string;
  companyId?: string;
}

export interface RecordInput {
  audit: AuditEntry;
  patch?: ReadModelPatch;
  /** Set on the last record of an intake: its end stage for the contact history. */
  finalStage?: Stage;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function intakeLinks(deps: ActivityDeps, stamp: Pick<ProgressStamp, 'workflowId' | 'runId'>): IntakeLinks {
  const { config } = deps;
  return {
    inbox: `${config.api.publicUrl.replace(/\/$/, '')}/inbox?prospect=${encodeURIComponent(stamp.workflowId)}`,
    temporal: `${config.temporal.uiUrl}/namespaces/${encodeURIComponent(config.temporal.namespace)}/workflows/${encodeURIComponent(stamp.workflowId)}/${stamp.runId}/history`,
  };
}

export function createIntakeActivities(deps: ActivityDeps) {
  const { config, pool } = deps;
  // Clients are made on first use: a worker that never runs an intake never touches Google.
  let google: { gmail: Gmail; calendar: Calendar } | undefined;
  const googleClients = () => {
    if (!google) {
      const auth = createGoogleAuth(config.providers.google, { timeoutMs: 15_000 });
      google = {
        gmail: createGmail(config.providers.google, { auth, timeoutMs: 15_000 }),
        calendar: createCalendar(config.providers.google, { auth, timeoutMs: 15_000 }),
      };
    }
    return google;
  };
  let drafts: GmailDrafts | undefined;
  const gmailDrafts = () => (drafts ??= createGmailDrafts(googleClients().gmail, pool));
  let crm: CrmRecords | undefined;
  const crmRecords = () => (crm ??= createCrmRecords(createHubspot(config.providers.hubspot), pool));
  let openai: ReturnType<typeof createOpenAI> | undefined;
  const llm = () => (openai ??= createOpenAI(config.providers.openai, { timeoutMs: 45_000 }));

  /** Whether an earlier run of this intake sent its email ('sent'), or asked Gmail to and cannot tell ('sending'). */
  async function priorSend(intakeKey: string): Promise<'sent' | 'sending' | undefined> {
    const record = await sendRecord(pool, intakeKey);
    if (record.state === 'sent') return 'sent';
    if (record.state !== 'sending') return undefined;
    const draftId = (await findEffect(pool, `${intakeKey}:draft`))?.external_id;
    const outcome = await withHeartbeat(() => gmailDrafts().sendOutcome(record.messageId!, { draftMessageId: record.draftMessageId, draftId }));
    if (outcome.state === 'sent') {
      await markSent(pool, intakeKey, outcome.id);
      return 'sent';
    }
    // Still a draft in Gmail: that send never happened; the next send attempt settles its record.
    return outcome.state === 'draft' ? undefined : 'sending';
  }

  async function recordSentStep(stamp: ProgressStamp, s: { gmailMessageId: string; alreadySent: boolean; version: number; messageId: string }) {
    await commitStep(
      pool,
      stamp,
      { kind: 'step', action: 'send', outcome: s.alreadySent ? 'found_sent' : 'sent', details: { version: s.version, messageId: s.messageId, gmailMessageId: s.gmailMessageId } },
      { data: { sent: { gmailMessageId: s.gmailMessageId, version: s.version, at: new Date().toISOString() } } },
    );
  }

  return {
    /** Step 1: normalise, suppression list, re-contact window, caps, pause. */
    async intakeScreen(stamp: ProgressStamp, input: ScreenInput & { sender?: string; mode?: SendMode; approvalTimeoutMs?: number }): Promise<ScreenResult> {
      // The deployment decides whether this intake may send; its input can only narrow that.
      const { mode, narrowed } = effectiveSendMode(config, input.mode);
      const result = await screenLead(pool, { ...stamp, mode }, input, {
        sender: input.sender ?? config.outreach.senderEmail,
        mode,
        approvalTimeoutMs: input.approvalTimeoutMs ?? config.outreach.approvalTimeoutMs,
      });
      return { ...result, effectiveMode: mode, ...(narrowed ? { modeNarrowed: true } : {}) };
    },

    /** Step 2: the HubSpot contact (created when missing), company, association, owner; and who the sender is. */
    async intakeResolveCrm(stamp: ProgressStamp, input: { lead: ScreenedLead; sender: string }): Promise<{ crm: ResolvedCrm; sender: SenderProfile }> {
      const resolved = await withHeartbeat(() => crmRecords().resolve(input.lead as LeadForCrm, input.sender, stamp.intakeKey));
      const settings = await readSettings(pool);
      const sender: SenderProfile = {
        email: input.sender,
        name: resolved.senderName ?? input.sender.split('@')[0]!,
        company: settings.senderCompany,
        ...(settings.senderPitch ? { pitch: settings.senderPitch } : {}),
        timeZone: settings.senderTimeZone,
        workingHours: { start: settings.workingHoursStart, end: settings.workingHoursEnd },
      };
      const owner = resolved.owner?.email ?? resolved.owner?.id;
      await commitStep(
        pool,
        { ...stamp, owner },
        {
          kind: 'step',
          action: 'resolve',
          outcome: resolved.contact.created ? 'contact_created' : 'contact_found',
          details: { contactId: resolved.contact.id, companyId: resolved.company?.id ?? null, ownerId: resolved.owner?.id ?? null },
        },
        { data: { crm: { contactId: resolved.contact.id, companyId: resolved.company?.id, ownerId: resolved.owner?.id }, facts: resolved.facts } },
      );
      return { crm: resolved, sender };
    },

    /** Step 3: Gmail threads with the prospect. */
    async intakeGatherContext(stamp: ProgressStamp, input: { email: string }): Promise<EmailContext> {
      const context = await withHeartbeat(() => gmailDrafts().gatherContext(input.email));
      await commitStep(
        pool,
        stamp,
        { kind: 'step', action: 'context', outcome: context.reply ? 'reply_in_thread' : context.threadCount ? 'old_threads' : 'no_threads', details: { threads: context.threadCount, threadId: context.reply?.threadId ?? null } },
        { data: { threads: context.threadCount, replying: Boolean(context.reply) } },
      );
      return context;
    },

    /** Step 4: three free 30-minute slots. */
    async intakeProposeSlots(stamp: ProgressStamp, input: { sender: SenderProfile; prospectTimeZone?: string }): Promise<Slot[]> {
      const slots = await withHeartbeat(() =>
        proposeSlots(googleClients().calendar, {
          senderEmail: input.sender.email,
          senderTimeZone: input.sender.timeZone,
          prospectTimeZone: input.prospectTimeZone,
          workingHours: input.sender.workingHours,
        }),
      );
      await commitStep(pool, stamp, { kind: 'step', action: 'slots', outcome: slots.length ? 'proposed' : 'none_free', details: { slots: slots.map((s) => s.start) } }, { data: { slots } });
      return slots;
    },

    /** Step 5: one LLM draft, judged by the grounding check and the guards. */
    async intakeWriteDraft(stamp: ProgressStamp, input: { context: WriterContext; attempt: number; feedback?: WriterFeedback | string[] }): Promise<WriteOutcome> {
      const { grounding } = config;
      const outcome = await writeEmail(
        llm(),
        { model: config.providers.openai.model, ...(grounding.modelCheck ? { claimCheck: { model: grounding.model } } : {}) },
        input.context,
        input.feedback,
      );
      const judged = { attempts: input.attempt, problems: outcome.problems, rejections: outcome.rejections };
      await commitStep(
        pool,
        stamp,
        {
          key: `write:${input.attempt}`,
          kind: 'step',
          action: 'write',
          outcome: outcome.ok ? 'grounded' : 'rejected',
          details: {
            attempt: input.attempt,
            problems: outcome.problems,
            rejections: outcome.rejections,
            factsUsed: outcome.factsUsed,
            model: outcome.model,
            claimCheck: outcome.claimCheck ?? null,
            tokens: outcome.tokens ?? null,
          },
        },
        // The facts the writer was given (CRM, thread, sender) replace the CRM-only list of the resolve step.
        { data: { grounding: judged, facts: input.context.facts } },
      );
      return outcome;
    },

    /** Step 6: the Gmail draft, once per intake. */
    async intakeCreateDraft(stamp: ProgressStamp, input: DraftRecordInput): Promise<DraftRef | { priorSend: 'sent' | 'sending' }> {
      // A run reset after its intake sent (or asked Gmail to) writes no new draft: that email is the intake's one.
      const prior = await priorSend(stamp.intakeKey);
      if (prior) {
        await commitStep(pool, stamp, { kind: 'step', action: 'draft', outcome: `already_${prior}`, details: { messageId: input.draft.messageId } });
        return { priorSend: prior };
      }
      const ref = await withHeartbeat(() => gmailDrafts().ensureDraft(input.draft));
      await commitStep(
        pool,
        stamp,
        { kind: 'step', action: 'draft', outcome: ref.created ? 'created' : ref.rewritten ? 'rewritten' : 'found_existing', details: { draftId: ref.draftId, messageId: input.draft.messageId, threadId: ref.threadId, replying: Boolean(input.draft.reply) } },
        { subject: input.draft.subject, data: { draft: draftView(input.draft, ref, input.factsUsed) } },
      );
      return ref;
    },

    /** Step 7a: the owner's "review and send" task. */
    async intakeCreateTask(stamp: ProgressStamp, input: TaskInput): Promise<{ taskId: string }> {
      const links = intakeLinks(deps, stamp);
      const who = input.prospect.name ? `${input.prospect.name} <${input.prospect.email}>` : input.prospect.email;
      const verb = input.mode === 'send_on_approval' ? 'approve (Prospector sends on approval)' : 'approve, then send from Gmail';
      const task = await withHeartbeat(() =>
        crmRecords().ensureTask(stamp.intakeKey, effectKey(stamp.intakeKey, 'task'), {
          subject: `Review and send: ${input.subject}`,
          body: `<p>Draft to ${esc(who)}${input.prospect.company ? ` at ${esc(input.prospect.company)}` : ''} is waiting: ${esc(verb)} by ${esc(input.deadline)}.</p><p><a href="${esc(links.inbox)}">Approval inbox</a> · <a href="${esc(links.temporal)}">Workflow in Temporal</a></p>`,
          dueAt: input.deadline,
          ownerId: input.ownerId,
          contactId: input.contactId,
          companyId: input.companyId,
        }),
      );
      await commitStep(pool, stamp, { kind: 'step', action: 'task', outcome: task.created ? 'created' : 'found_existing', details: { taskId: task.id } }, { data: { taskId: task.id } });
      return { taskId: task.id };
    },

    /** Step 7b: the summary note with links. */
    async intakeAddNote(stamp: ProgressStamp, input: NoteInput): Promise<{ noteId: string }> {
      const links = intakeLinks(deps, stamp);
      const used = input.facts.filter((f) => input.factsUsed.includes(f.id));
      const body = [
        `<p><strong>Prospector drafted ${input.replying ? 'a reply in the existing thread' : 'a first email'}</strong> to ${esc(input.prospect.name ?? input.prospect.email)} (${esc(input.prospect.email)}): “${esc(input.subject)}” (draft v${input.version}).</p>`,
        `<p>Proposed times: ${input.slots.map((s) => esc(s.label)).join('; ') || 'none free'}.</p>`,
        `<p>Grounded on: ${used.map((f) => esc(f.text)).join(' ') || 'no facts'}.</p>`,
        `<p>Mode: ${esc(input.mode)}. Awaiting approval until ${esc(input.deadline)}.</p>`,
        `<p><a href="${esc(links.inbox)}">Approval inbox</a> · <a href="${esc(links.temporal)}">Workflow in Temporal</a></p>`,
      ].join('');
      const note = await withHeartbeat(() =>
        crmRecords().ensureNote(stamp.intakeKey, effectKey(stamp.intakeKey, 'note'), { body, at: new Date().toISOString(), ownerId: input.ownerId, contactId: input.contactId, companyId: input.companyId }),
      );
      await commitStep(pool, stamp, { kind: 'step', action: 'note', outcome: note.created ? 'created' : 'found_existing', details: { noteId: note.id } }, { data: { noteId: note.id, links } });
      return { noteId: note.id };
    },

    /** A database-only record: the gate opening, a signal accepted or refused, an end state. */
    async intakeRecord(stamp: ProgressStamp, input: RecordInput): Promise<void> {
      await inTransaction(pool, async (db) => {
        await appendIntakeAudit(db, stamp, input.audit);
        await writeReadModel(db, stamp, input.patch);
        if (input.finalStage) await recordFinalStage(db, stamp.intakeKey, input.finalStage);
      });
    },

    /**
     * Judges the decisions the gate has screened, in one call for a batch:
     * signature, content and registry (lib/domain/approvals.ts). Records
     * nothing; the gate records what it does with each verdict.
     */
    async intakeAuthorise(_stamp: ProgressStamp, input: { subject: DecisionSubject; requests: DecisionRequest[] }): Promise<Verdict[]> {
      const now = Date.now();
      const verdicts: Verdict[] = [];
      for (const request of input.requests) verdicts.push(await authoriseDecision((identity) => findApprover(pool, identity), config.approvals, request, input.subject, now));
      return verdicts;
    },

    /** Refused signals, in one statement: an audit row each, numbered from `first` across the intake. */
    async intakeRecordRefusals(stamp: ProgressStamp, input: { refusals: Refusal[]; first: number }): Promise<void> {
      await appendAuditBatch(
        pool,
        input.refusals.map((r, i) =>
          intakeAuditEvent(stamp, {
            key: `refusal:${input.first + i}`,
            kind: 'signal',
            action: r.signal,
            outcome: 'refused',
            actor: r.by,
            details: { version: r.version ?? null, currentVersion: stamp.draftVersion || null, reason: r.reason, requestId: r.requestId ?? null, receivedAt: r.at },
          }),
        ),
      );
    },

    /** The approval of one draft version and its exact content, recorded where the send step will look for it. */
    async intakeRecordApproval(
      stamp: ProgressStamp,
      input: { draft: DraftContent; approver: string; contentHash: string; reason?: string; requestId?: string; signed?: boolean; keyId?: string },
    ): Promise<void> {
      const content = contentOfDraft(input.draft);
      if (draftHash(input.draft) !== input.contentHash) {
        throw ApplicationFailure.nonRetryable('The draft to record differs from the content that was authorised', 'NotApproved');
      }
      const d = input.draft;
      await inTransaction(pool, async (db) => {
        await recordApproval(db, {
          intakeKey: stamp.intakeKey,
          version: d.version,
          workflowId: stamp.workflowId,
          runId: stamp.runId,
          approver: input.approver,
          reason: input.reason,
          messageId: d.messageId,
          contentHash: input.contentHash,
          fieldHashes: fieldHashes(content),
          requestId: input.requestId,
          signed: input.signed ?? false,
          keyId: input.keyId,
        });
        await appendIntakeAudit(db, stamp, {
          kind: 'decision',
          action: 'approve',
          outcome: 'approved',
          actor: input.approver,
          details: { version: d.version, messageId: d.messageId, contentHash: input.contentHash, signed: input.signed ?? false, keyId: input.keyId ?? null, reason: input.reason ?? null, requestId: input.requestId ?? null },
        });
        await writeReadModel(db, stamp, { data: { decision: { outcome: 'approved', by: input.approver, version: d.version, reason: input.reason } } });
      });
    },

    /** An edit: guards, then the Gmail draft gets the new version. Refused edits change nothing. */
    async intakeReviseDraft(
      stamp: ProgressStamp,
      input: { draftId: string; base: DraftContent; subject?: string; body?: string; editor: string; requestId?: string; factsUsed: string[] },
    ): Promise<{ applied: true; draft: DraftContent; ref: DraftRef } | { applied: false; problems: string[] }> {
      const edit: DraftEdit = { ...(input.subject !== undefined ? { subject: input.subject } : {}), ...(input.body !== undefined ? { body: input.body } : {}) };
      const edited = editDraft(input.base, edit);
      if (!edited.ok) return { applied: false, problems: edited.problems };
      const draft = edited.draft;
      const ref = await withHeartbeat(() => gmailDrafts().reviseDraft(input.draftId, draft));
      await commitStep(
        pool,
        { ...stamp, draftVersion: draft.version },
        { key: `edit:v${draft.version}`, kind: 'signal', action: 'edit', outcome: 'applied', actor: input.editor, details: { version: draft.version, messageId: draft.messageId, contentHash: ref.contentHash, requestId: input.requestId ?? null } },
        { subject: draft.subject, data: { draft: draftView(draft, ref, input.factsUsed, input.editor) } },
      );
      return { applied: true, draft, ref };
    },

    /**
     * send_on_approval: the only activity that sends. It refuses on a
     * deployment that does not send, and otherwise sends only the approved
     * content under the intake's exclusive send claim (gmail-drafts.ts).
     */
    async intakeSendDraft(stamp: ProgressStamp, input: { version: number; draftId: string; messageId: string; contentHash?: string }): Promise<SendOutcome> {
      const refused = sendRefusal(config);
      if (refused) throw ApplicationFailure.nonRetryable(`Not sending: ${refused}`, 'SendingDisabled');
      if (!input.contentHash) throw ApplicationFailure.nonRetryable('No approved content hash was given; not sending', 'NotApproved');
      const sent = await withHeartbeat(() =>
        gmailDrafts().sendApprovedDraft(
          { intakeKey: stamp.intakeKey, version: input.version, draftId: input.draftId, messageId: input.messageId, contentHash: input.contentHash! },
          { lookupPatienceMs: config.outreach.sendLookupPatienceMs },
        ),
      );
      if (!sent.recorded) return sent;
      try {
        await recordSentStep(stamp, { ...sent, version: input.version, messageId: input.messageId });
        return sent;
      } catch {
        return { ...sent, recorded: false };
      }
    },

    /** A send Gmail confirmed while PostgreSQL was away: recorded once the database answers. */
    async intakeRecordSent(stamp: ProgressStamp, input: { gmailMessageId: string; alreadySent: boolean; version: number; messageId: string }): Promise<void> {
      await markSent(pool, stamp.intakeKey, input.gmailMessageId);
      await recordSentStep(stamp, input);
    },

    /** Where the intake's send stands; only 'none' and 'claimed' prove nothing was sent. */
    async intakeSendState(stamp: ProgressStamp): Promise<SendState> {
      return sendState(pool, stamp.intakeKey);
    },

    /** After the decision: draft removed when rejected/expired, task closed, a decision note, the end state. */
    async intakeCloseOut(stamp: ProgressStamp, input: CloseOutInput): Promise<{ noteId?: string }> {
      const d = input.decision;
      const removeDraft = d.outcome !== 'approved' && input.draftId;
      const draftRemoved = removeDraft ? await withHeartbeat(() => gmailDrafts().deleteDraft(input.draftId!)) : false;
      if (input.taskId) await withHeartbeat(() => crmRecords().completeTask(input.taskId!));
      let noteId: string | undefined;
      if (input.contactId) {
        const what =
          d.outcome === 'approved'
            ? input.sent
              ? `Draft v${d.version} approved by ${d.by} and sent by Prospector.`
              : input.mode === 'send_on_approval'
                ? `Draft v${d.version} approved by ${d.by}; not sent: ${input.note ?? 'see the workflow'}.`
                : `Draft v${d.version} approved by ${d.by}. It waits in Gmail drafts, marked approved, for you to send.`
            : d.outcome === 'rejected'
              ? `Draft rejected by ${d.by}${d.reason ? `: ${d.reason}` : ''}. The Gmail draft was deleted.`
              : 'No decision before the approval deadline: the intake expired and the Gmail draft was deleted.';
        const links = intakeLinks(deps, stamp);
        const note = await withHeartbeat(() =>
          crmRecords().ensureNote(stamp.intakeKey, effectKey(stamp.intakeKey, 'decision-note'), {
            body: `<p><strong>Prospector:</strong> ${esc(what)}</p><p><a href="${esc(links.temporal)}">Workflow in Temporal</a></p>`,
            at: new Date().toISOString(),
            ownerId: input.ownerId,
            contactId: input.contactId!,
            companyId: input.companyId,
          }),
        );
        noteId = note.id;
      }
      await inTransaction(pool, async (db) => {
        await appendIntakeAudit(db, stamp, {
          kind: 'step',
          action: 'close',
          outcome: stamp.stage.toLowerCase(),
          details: { decision: d.outcome, draftRemoved, taskClosed: Boolean(input.taskId), decisionNoteId: noteId ?? null, note: input.note ?? null },
        });
        await writeReadModel(db, stamp, { reason: input.note, data: { decision: d, decisionNoteId: noteId } });
        await recordFinalStage(db, stamp.intakeKey, stamp.stage);
      });
      return { noteId };
    },

    /** Grounding failed twice: a human writes this one; the owner gets a task and a note saying why. */
    async intakeNeedsHuman(stamp: ProgressStamp, input: NeedsHumanInput): Promise<{ taskId: string; noteId: string }> {
      const links = intakeLinks(deps, stamp);
      const who = input.prospect.name ? `${input.prospect.name} <${input.prospect.email}>` : input.prospect.email;
      const why = input.problems.map(esc).join('; ');
      // One line per problem: each rejected sentence quoted, with why, so the owner sees what the writer got wrong.
      const listed = `<ul>${input.problems.map((p) => `<li>${esc(p)}</li>`).join('')}</ul>`;
      const task = await withHeartbeat(() =>
        crmRecords().ensureTask(stamp.intakeKey, effectKey(stamp.intakeKey, 'human-task'), {
          subject: `Write by hand: first email to ${who}`,
          body: `<p>Prospector could not write a grounded draft (${why}). Please write this one yourself.</p><p><a href="${esc(links.temporal)}">Workflow in Temporal</a></p>`,
          dueAt: new Date(Date.now() + 86_400_000).toISOString(),
          ownerId: input.ownerId,
          contactId: input.contactId,
          companyId: input.companyId,
        }),
      );
      const note = await withHeartbeat(() =>
        crmRecords().ensureNote(stamp.intakeKey, effectKey(stamp.intakeKey, 'human-note'), {
          body: `<p><strong>Prospector needs a human:</strong> no draft was created for ${esc(who)} because the writer's drafts failed our checks:</p>${listed}`,
          at: new Date().toISOString(),
          ownerId: input.ownerId,
          contactId: input.contactId,
          companyId: input.companyId,
        }),
      );
      await inTransaction(pool, async (db) => {
        await appendIntakeAudit(db, stamp, { kind: 'step', action: 'needs_human', outcome: 'handed_over', details: { problems: input.problems, rejections: input.rejections ?? [], taskId: task.id, noteId: note.id } });
        await writeReadModel(db, stamp, { reason: `grounding: ${input.problems.join('; ')}`, data: { taskId: task.id, noteId: note.id } });
        await recordFinalStage(db, stamp.intakeKey, stamp.stage);
      });
      return { taskId: task.id, noteId: note.id };
    },
  };
}

export type IntakeActivities = ReturnType<typeof createIntakeActivities>;
