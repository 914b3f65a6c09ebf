import { ActivityFailure, condition, continueAsNew, patched, setHandler, workflowInfo } from '@temporalio/workflow';
import type { DecisionRequest, DecisionSubject, Verdict } from '../../lib/domain/approvals.js';
import type { Decision, GateCarry, Refusal } from '../../lib/domain/prospect.js';
import { providers, store } from './activities.js';
import { clean, inbound, RECENT_REFUSALS, refusalOf, screenSignal, type GateView, type Inbound, type SignalName } from './gate.js';
import { approveSignal, editSignal, rejectSignal } from './messages.js';
import { describeFailure } from './failures.js';
import type { IntakeRun } from './run.js';

/**
 * Marks runs whose gate judges signals with gate.ts and intakeAuthorise,
 * records refusals in batches and settles sends truthfully. Histories recorded
 * before it replay through the branches that check it; remove those branches
 * (deprecatePatch) once no such run can be open.
 */
export const APPROVAL_INTEGRITY = 'approval-integrity';

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

/**
 * The approval gate of one run: the signals it has received, the decision it
 * waits for, the refusals it owes the record. Signals are taken from the
 * start of the run (an early one is refused on the record, not lost); the
 * gate judges them once it is open.
 */
export class ApprovalGate {
  open: boolean;
  decided = false;
  private readonly inbox: Inbound[] = [];
  private pending: Refusal[] = [];
  private refusalCount: number;
  private readonly requestIds: string[];
  private readonly seenRequests: Set<string>;

  constructor(private readonly run: IntakeRun) {
    const carry = run.input.resume;
    this.open = Boolean(carry);
    this.refusalCount = carry?.refusalCount ?? 0;
    this.requestIds = carry?.requestIds.slice(-KEEP_REQUEST_IDS) ?? [];
    this.seenRequests = new Set(this.requestIds);
    setHandler(approveSignal, (payload) => this.receive('approve', payload));
    setHandler(rejectSignal, (payload) => this.receive('reject', payload));
    setHandler(editSignal, (payload) => this.receive('edit', payload));
  }

  private receive(signal: SignalName, payload: unknown): void {
    const msg = inbound(signal, payload, this.run.now(), !this.open);
    const id = clean(msg.payload.requestId, 100);
    if (id) {
      if (this.seenRequests.has(id)) return; // a retried API call: already queued or handled
      this.seenRequests.add(id);
      this.requestIds.push(id);
      if (this.requestIds.length > KEEP_REQUEST_IDS) this.seenRequests.delete(this.requestIds.shift()!);
    }
    this.inbox.push(msg);
  }

  /** The gate's decision: an approval, a rejection, or the deadline passing. */
  async decision(deadlineMs: number): Promise<Decision> {
    const { run } = this;
    for (;;) {
      const remaining = deadlineMs - Date.now();
      if (remaining <= 0 || !(await condition(() => this.inbox.length > 0, remaining))) {
        const expired: Decision = { outcome: 'expired', at: run.now() };
        await store.intakeRecord(run.enter('CLOSING', 'EXPIRED'), {
          audit: { kind: 'decision', action: 'expire', outcome: 'expired', actor: 'timer', details: { version: run.status.draft?.version ?? null, timeoutMs: run.status.approval?.timeoutMs ?? null } },
          patch: { data: { decision: expired } },
        });
        run.note('gate', 'expired');
        return expired;
      }
      if (!patched(APPROVAL_INTEGRITY)) {
        const decision = await this.handleLegacy(this.inbox.shift()!);
        if (decision) return decision;
        continue;
      }
      const decision = await this.decideBatch(this.inbox.splice(0, GATE_BATCH));
      if (decision) return decision;
      const { historyLength, historySize, continueAsNewSuggested } = workflowInfo();
      if (continueAsNewSuggested || historyLength > GATE_HISTORY_EVENTS || historySize > GATE_HISTORY_BYTES) await this.continueWhenQuiet(deadlineMs);
    }
  }

  private view(): GateView {
    return { open: this.open, decided: this.decided ? this.run.status.decision?.outcome : undefined, version: this.run.status.draft?.version ?? 0 };
  }

  private subject(): DecisionSubject {
    const { run } = this;
    return {
      workflowId: run.info.workflowId,
      draft: run.draft!,
      owner: run.status.owner ? { id: run.status.owner.id, email: run.status.owner.email } : undefined,
      domain: run.status.lead.domain,
    };
  }

  /**
   * Signals that came in together: screened by the gate's rules, the survivors
   * authorised in chunks, then acted on in arrival order. A state change (an
   * applied edit) re-screens those behind it; after a decision the rest are
   * refused as late.
   */
  private async decideBatch(batch: Inbound[]): Promise<Decision | undefined> {
    const screened = batch.map((msg) => screenSignal(msg, this.view()));
    const candidates = screened.flatMap((s, i) => (s.ok ? [{ i, request: s.request }] : []));
    const verdicts = new Map<number, Verdict>();
    for (const chunk of chunks(candidates, (c) => batch[c.i]!.bytes)) {
      const judged = await store.intakeAuthorise(this.run.stamp(), { subject: this.subject(), requests: chunk.map((c) => c.request) });
      chunk.forEach((c, k) => verdicts.set(c.i, judged[k]!));
    }
    for (let i = 0; i < batch.length; i++) {
      const msg = batch[i]!;
      const was = screened[i]!;
      const is = was.ok ? screenSignal(msg, this.view()) : was;
      if (!is.ok) {
        this.refuse(msg, is.reason);
        continue;
      }
      const verdict = verdicts.get(i)!;
      if (!verdict.ok) {
        this.refuse(msg, verdict.reason);
        continue;
      }
      await this.flushRefusals();
      const decision = await this.act(msg, is.request, verdict);
      if (decision) {
        for (const late of batch.slice(i + 1)) this.refuse(late, `the intake was already decided (${decision.outcome})`);
        await this.flushRefusals();
        return decision;
      }
    }
    await this.flushRefusals();
    return undefined;
  }

  /** An authorised decision: reject, edit, or approve (with its edit applied first). */
  private async act(msg: Inbound, request: DecisionRequest, verdict: Extract<Verdict, { ok: true }>): Promise<Decision | undefined> {
    const { run } = this;
    const by = verdict.approver;
    const requestId = clean(msg.payload.requestId, 100);
    const reason = clean(msg.payload.reason, 1000);
    const current = run.status.draft!.version;
    if (request.action === 'reject') {
      const decision: Decision = { outcome: 'rejected', by, version: request.version ?? current, reason, at: msg.at, requestId, signed: verdict.signed };
      await store.intakeRecord(run.enter('CLOSING', 'REJECTED'), {
        audit: {
          kind: 'decision',
          action: 'reject',
          outcome: 'rejected',
          actor: by,
          details: { version: decision.version ?? null, currentVersion: current, reason: reason ?? null, requestId: requestId ?? null, signed: verdict.signed, keyId: verdict.keyId ?? null },
        },
        patch: { reason, data: { decision } },
      });
      run.note('gate', 'rejected', `by ${by}`);
      return decision;
    }
    if (request.edit && !(await this.applyEdit(msg, by, request.edit, verdict.contentHash))) return undefined;
    if (request.action === 'edit') return undefined;
    const d = run.status.draft!;
    const decision: Decision = { outcome: 'approved', by, version: d.version, reason, at: msg.at, requestId, contentHash: verdict.contentHash, signed: verdict.signed };
    await store.intakeRecordApproval(run.enter(run.mode === 'send_on_approval' ? 'SENDING' : 'CLOSING', 'APPROVED'), {
      draft: run.draft!,
      approver: by,
      contentHash: verdict.contentHash,
      reason,
      requestId,
      signed: verdict.signed,
      keyId: verdict.keyId,
    });
    run.note('gate', 'approved', `v${d.version} by ${by}`);
    return decision;
  }

  /** Writes an authorised edit to Gmail as the next version; false (and refused on the record) when it cannot be. */
  private async applyEdit(msg: Inbound, by: string, edit: { subject?: string; body?: string }, expectedHash?: string): Promise<boolean> {
    const { run } = this;
    let result;
    try {
      result = await providers.intakeReviseDraft(run.stamp(), {
        draftId: run.draftId!,
        base: run.draft!,
        subject: edit.subject,
        body: edit.body,
        editor: by,
        requestId: clean(msg.payload.requestId, 100),
        factsUsed: run.status.draft!.factsUsed,
      });
    } catch (err) {
      // Gmail refused the edit for good (e.g. the draft was deleted there): the gate stays open.
      if (!(err instanceof ActivityFailure)) throw err;
      await this.refuseNow(msg, `edit failed: ${describeFailure(err)}`);
      return false;
    }
    if (!result.applied) {
      await this.refuseNow(msg, `edit refused: ${result.problems.join('; ')}`);
      return false;
    }
    if (expectedHash && result.ref.contentHash !== expectedHash) {
      await this.refuseNow(msg, 'the edited draft in Gmail is not the content that was authorised');
      return false;
    }
    run.showDraft(result.draft, result.ref, run.status.draft!.factsUsed, by);
    run.note('edit', 'applied', `v${result.draft.version} by ${by}`);
    return true;
  }

  // ---- refusals: kept small, recorded in batches -------------------------------------------

  private refuse(msg: Inbound, reason: string): void {
    const refusal = refusalOf(msg, reason);
    this.pending.push(refusal);
    const { status } = this.run;
    status.refusals = [...status.refusals.slice(-(RECENT_REFUSALS - 1)), refusal];
    status.refusalCount = ++this.refusalCount;
  }

  private async flushRefusals(): Promise<void> {
    while (this.pending.length) {
      const first = this.refusalCount - this.pending.length + 1;
      const refusals = this.pending.splice(0, REFUSALS_PER_RECORD);
      await store.intakeRecordRefusals(this.run.stamp(), { refusals, first });
    }
  }

  /** Refuses one signal and records it before anything else happens. */
  private async refuseNow(msg: Inbound, reason: string): Promise<void> {
    if (!patched(APPROVAL_INTEGRITY)) return this.legacyRefuse(msg, msg.actor, reason);
    this.refuse(msg, reason);
    await this.flushRefusals();
  }

  /** Signals left when no gate will look at them (a screened-out lead, a decided intake): refused on the record. */
  async refuseRemaining(reason: string): Promise<void> {
    if (!this.inbox.length) return;
    if (!patched(APPROVAL_INTEGRITY)) {
      while (this.inbox.length) {
        const msg = this.inbox.shift()!;
        await this.legacyRefuse(msg, legacyActor(msg), reason);
      }
      return;
    }
    while (this.inbox.length) {
      for (const msg of this.inbox.splice(0, GATE_BATCH)) this.refuse(msg, reason);
      await this.flushRefusals();
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
  private async continueWhenQuiet(deadlineMs: number): Promise<void> {
    for (const msg of this.inbox.splice(0)) {
      const s = screenSignal(msg, this.view());
      if (!s.ok && s.lasting) this.refuse(msg, s.reason);
      else this.inbox.push(msg);
    }
    await this.flushRefusals();
    if (this.inbox.length) return;
    const { run } = this;
    const next: GateCarry = {
      status: { ...run.status, history: run.status.history.slice(-KEEP_NOTES) },
      draft: run.draft!,
      draftId: run.draftId!,
      taskId: run.taskId,
      crm: run.crm!,
      deadlineMs,
      seq: run.stepCount,
      refusalCount: this.refusalCount,
      requestIds: this.requestIds.slice(-KEEP_REQUEST_IDS),
    };
    await continueAsNew<(input: typeof run.input) => Promise<unknown>>({ ...run.input, resume: next });
  }

  // ---- runs recorded before APPROVAL_INTEGRITY replay through these ----------------------------

  private async legacyRefuse(msg: Inbound, by: string, reason: string): Promise<void> {
    const { status } = this.run;
    status.refusals.push({ at: msg.at, signal: msg.signal, by, reason });
    this.run.note(msg.signal, 'refused', reason);
    await store.intakeRecord(this.run.stamp(), { audit: { key: `refusal:${status.refusals.length}`, kind: 'signal', action: msg.signal, outcome: 'refused', actor: by, details: { reason } } });
  }

  private async handleLegacy(msg: Inbound): Promise<Decision | undefined> {
    const { run } = this;
    const p = msg.payload;
    const current = run.status.draft!.version;
    const by = legacyActor(msg);
    if (msg.signal === 'reject') {
      const decision: Decision = { outcome: 'rejected', by, version: typeof p.version === 'number' ? p.version : current, reason: clean(p.reason, 500), at: msg.at };
      await store.intakeRecord(run.enter('CLOSING', 'REJECTED'), { audit: { kind: 'decision', action: 'reject', outcome: 'rejected', actor: by }, patch: { data: { decision } } });
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
    if (refusal) return void (await this.legacyRefuse(msg, by, refusal));
    if ((edit.subject !== undefined || edit.body !== undefined) && !(await this.applyEdit(msg, by, edit))) return undefined;
    if (msg.signal === 'edit') return undefined;
    const d = run.status.draft!;
    const decision: Decision = { outcome: 'approved', by, version: d.version, at: msg.at };
    await store.intakeRecordApproval(run.enter(run.mode === 'send_on_approval' ? 'SENDING' : 'CLOSING', 'APPROVED'), { draft: run.draft!, approver: by, contentHash: d.contentHash ?? '' });
    return decision;
  }
}

function legacyActor(msg: Inbound): string {
  return clean(msg.signal === 'edit' ? msg.payload.editor : msg.payload.approver, 500) ?? 'unknown';
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
