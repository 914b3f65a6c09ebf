import { upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import { draftView, type DraftContent, type DraftPlace } from '../../lib/domain/draft.js';
import type { ProgressStamp } from '../../lib/store/prospects.js';
import {
  DEFAULT_APPROVAL_TIMEOUT_MS,
  durationMs,
  normaliseAsciiEmail,
  type ApprovalStateValue,
  type IntakeInput,
  type IntakeResult,
  type IntakeStatus,
  type LeadInput,
  type SendMode,
  type Stage,
} from '../../lib/domain/prospect.js';
import { ApprovalState, ProspectDomain, ProspectOwner, ProspectStage } from '../../lib/domain/search-attributes.js';
import { clean } from './gate.js';

/** The HubSpot records an intake's later steps act on. */
export interface CrmIds {
  ownerId?: string;
  contactId: string;
  companyId?: string;
}

/** A bare lead ({email, name, ...}) is taken too, for starters that send only that. */
export function asIntakeInput(raw: IntakeInput): IntakeInput {
  return raw && typeof raw === 'object' && !raw.lead && 'email' in raw ? { lead: raw as unknown as LeadInput } : raw;
}

/**
 * What one run of an intake knows and how it says so: the `status` the query
 * returns, the stage and its search attributes, and the stamp every activity
 * carries (which run, which step, in which order) so the read model and the
 * audit trail follow the workflow.
 */
export class IntakeRun {
  readonly info = workflowInfo();
  readonly status: IntakeStatus;
  /** Until the deployment has resolved it (screening), nothing is treated as sendable. */
  mode: SendMode;
  timeoutMs: number;
  crm?: CrmIds;
  draft?: DraftContent;
  draftId?: string;
  taskId?: string;
  private seq: number;
  private indexed: string;

  constructor(readonly input: IntakeInput) {
    const carry = input.resume;
    this.mode = carry?.status.mode ?? 'draft_only';
    this.timeoutMs = durationMs(input.approvalTimeout) ?? DEFAULT_APPROVAL_TIMEOUT_MS;
    this.seq = carry?.seq ?? 0;
    this.crm = carry?.crm;
    this.draft = carry?.draft;
    this.draftId = carry?.draftId;
    this.taskId = carry?.taskId;
    this.status = carry ? { ...carry.status, runId: this.info.runId } : this.freshStatus();
    this.indexed = carry ? this.signature() : '';
  }

  private freshStatus(): IntakeStatus {
    const lead = this.input.lead;
    const first = normaliseAsciiEmail(lead?.email);
    const address = first.ok ? { email: first.email, domain: first.domain } : { email: String(lead?.email ?? '').replace(/\u0000/g, '').slice(0, 320), domain: '' };
    return {
      workflowId: this.info.workflowId,
      runId: this.info.runId,
      intakeKey: this.info.firstExecutionRunId,
      stage: 'SCREENING',
      approvalState: 'NONE',
      mode: this.mode,
      lead: { ...address, name: clean(lead?.name, 500), company: clean(lead?.company, 500), title: clean(lead?.title, 500), source: clean(lead?.source, 500) },
      sender: this.input.sender ?? '',
      slots: [],
      facts: [],
      refusals: [],
      refusalCount: 0,
      history: [],
    };
  }

  now(): string {
    return new Date().toISOString();
  }

  /** A line of the step history the status query shows. */
  note(step: string, outcome: string, detail?: string): void {
    this.status.history.push({ at: this.now(), step, outcome, ...(detail ? { detail } : {}) });
  }

  private signature(): string {
    const s = this.status;
    return [s.stage, s.approvalState, s.lead.domain, s.owner ? (s.owner.email ?? s.owner.id) : undefined].join('|');
  }

  /** Moves to a stage: search attributes now, the stamp for the activity that makes it durable. */
  enter(stage: Stage, approval: ApprovalStateValue = this.status.approvalState): ProgressStamp {
    this.status.stage = stage;
    this.status.approvalState = approval;
    if (this.signature() !== this.indexed) {
      this.indexed = this.signature();
      const owner = this.status.owner ? (this.status.owner.email ?? this.status.owner.id) : undefined;
      upsertSearchAttributes([
        { key: ProspectStage, value: stage },
        { key: ApprovalState, value: approval },
        ...(this.status.lead.domain ? [{ key: ProspectDomain, value: this.status.lead.domain }] : []),
        ...(owner ? [{ key: ProspectOwner, value: owner }] : []),
      ]);
    }
    return this.stamp();
  }

  /** Where the intake stands, for the next activity; every stamp is later than the one before. */
  stamp(): ProgressStamp {
    const { info, status } = this;
    return {
      workflowId: info.workflowId,
      runId: info.runId,
      intakeKey: info.firstExecutionRunId,
      runStartedAt: info.runStartTime.toISOString(),
      seq: ++this.seq,
      stage: status.stage,
      approvalState: status.approvalState,
      mode: this.mode,
      draftVersion: status.draft?.version ?? 0,
      lead: { email: status.lead.email, domain: status.lead.domain, name: status.lead.name, company: status.lead.company, source: status.lead.source },
      owner: status.owner?.email ?? status.owner?.id,
      submissionId: this.input.submissionId,
    };
  }

  /** The step counter, for a run that continues as new. */
  get stepCount(): number {
    return this.seq;
  }

  /** The workflow's result, at its end stage. */
  finish(stage: Stage, reason?: string): IntakeResult {
    this.enter(stage);
    this.status.reason = reason ?? this.status.reason;
    return { stage, reason: this.status.reason, draftVersion: this.status.draft?.version, decision: this.status.decision };
  }

  /** The draft as the status query shows it: what an approver reviews (and signs). */
  showDraft(d: DraftContent, place: DraftPlace | undefined, factsUsed: string[], editedBy?: string): void {
    this.draft = d;
    if (place?.draftId) this.draftId = place.draftId;
    this.status.draft = draftView(d, place, factsUsed, editedBy);
  }

}
