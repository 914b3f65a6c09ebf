import type { DraftContent, DraftView } from './draft.js';
import type { Fact, Rejection } from './grounding.js';
import ms from 'ms';

/**
 * The prospect intake's shared vocabulary: how a lead's email is normalised,
 * how that becomes the workflow id, the stages and approval states, and the
 * JSON payloads of the approval signals and the status query.
 *
 * Workflow code imports this module, so it stays pure: no I/O, no Node
 * built-ins, nothing that reads the clock.
 */

// ---- email normalisation -------------------------------------------------------

export type NormalisedEmail =
  | { ok: true; email: string; domain: string; local: string }
  | { ok: false; reason: string };

/** Mailbox providers that ignore dots in the local part, so a.b@ and ab@ are one person. */
const DOTLESS_DOMAINS = new Set(['gmail.com', 'googlemail.com']);

const LOCAL_PART = /^[a-z0-9!#$%&'*/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*/=?^_`{|}~-]+)*$/;
const DOMAIN_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * One address per person: lower case, no `+tag`, googlemail → gmail without
 * dots. Refuses what cannot be an address, with a reason a person can act on.
 * ASCII only, so workflow code can use it: lib/domain/email.ts takes
 * internationalised domains first, everywhere else.
 */
export function normaliseAsciiEmail(raw: unknown): NormalisedEmail {
  if (typeof raw !== 'string') return { ok: false, reason: 'email is required' };
  const text = raw.trim().replace(/^mailto:/i, '').toLowerCase();
  if (!text) return { ok: false, reason: 'email is required' };
  if (text.length > 254) return { ok: false, reason: 'email is longer than 254 characters' };
  const at = text.lastIndexOf('@');
  if (at <= 0 || at === text.length - 1 || text.indexOf('@') !== at) {
    return { ok: false, reason: `"${clip(raw)}" is not an email address (expected name@domain)` };
  }
  let local = text.slice(0, at);
  let domain = text.slice(at + 1).replace(/\.$/, '');
  const labels = domain.split('.');
  if (labels.length < 2 || !labels.every((l) => DOMAIN_LABEL.test(l)) || /^\d+$/.test(labels.at(-1)!)) {
    return { ok: false, reason: `"${clip(raw)}" has no valid domain` };
  }
  local = local.split('+')[0]!;
  if (domain === 'googlemail.com') domain = 'gmail.com';
  if (DOTLESS_DOMAINS.has(domain)) local = local.replace(/\./g, '');
  if (!local || local.length > 64 || !LOCAL_PART.test(local)) {
    return { ok: false, reason: `"${clip(raw)}" has an invalid name before the @` };
  }
  return { ok: true, email: `${local}@${domain}`, domain, local };
}

export function clip(value: unknown): string {
  const s = String(value);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** Deterministic workflow id: one running intake per person (conflict policy USE_EXISTING). */
export function intakeWorkflowId(normalisedEmail: string): string {
  return `prospect-${normalisedEmail}`;
}

/** The address behind a workflow id made by intakeWorkflowId, or undefined. */
export function emailFromWorkflowId(workflowId: string): string | undefined {
  return workflowId.startsWith('prospect-') ? workflowId.slice('prospect-'.length) : undefined;
}

// ---- suppression patterns ---------------------------------------------------------

export type SuppressionPattern = { ok: true; pattern: string; kind: 'address' | 'domain' } | { ok: false; reason: string };

/** The suppression patterns that would catch this (normalised) address. */
export function suppressionCandidates(email: string, domain: string): string[] {
  const parts = domain.split('.');
  const domains = parts.slice(0, -1).map((_, i) => parts.slice(i).join('.'));
  return [email, ...domains.map((d) => `*@${d}`)];
}

// ---- stages and states -------------------------------------------------------------

export const STAGES = [
  'SUBMITTED',
  'SCREENING',
  'RESOLVING',
  'GATHERING_CONTEXT',
  'FINDING_SLOTS',
  'WRITING',
  'DRAFTING',
  'RECORDING',
  'AWAITING_APPROVAL',
  'SENDING',
  'CLOSING',
  // end states
  'APPROVED',
  'SENT',
  'REJECTED',
  'EXPIRED',
  'SKIPPED',
  'NEEDS_HUMAN',
  'FAILED',
] as const;
export type Stage = (typeof STAGES)[number];
export const END_STAGES: readonly Stage[] = ['APPROVED', 'SENT', 'REJECTED', 'EXPIRED', 'SKIPPED', 'NEEDS_HUMAN', 'FAILED'];

export const APPROVAL_STATES = ['NONE', 'AWAITING_APPROVAL', 'APPROVED', 'REJECTED', 'EXPIRED'] as const;
export type ApprovalStateValue = (typeof APPROVAL_STATES)[number];

export const SEND_MODES = ['draft_only', 'send_on_approval'] as const;
export type SendMode = (typeof SEND_MODES)[number];

/** Why a lead was screened out. */
export const SKIP_REASONS = ['invalid_email', 'suppressed', 'recontact_window', 'domain_daily_cap', 'sender_daily_cap', 'paused'] as const;
export type SkipReason = (typeof SKIP_REASONS)[number];

export const DEFAULT_APPROVAL_TIMEOUT_MS = 72 * 3_600_000;

// ---- workflow input -----------------------------------------------------------------

export interface LeadInput {
  email: string;
  name?: string;
  company?: string;
  title?: string;
  phone?: string;
  /** IANA time zone, when the lead told us. */
  timeZone?: string;
  /** Free text from the lead (form message). Data for the writer, never instructions. */
  notes?: string;
  /** api | webhook | cli | signal | temporal ... */
  source?: string;
}

export interface IntakeInput {
  lead: LeadInput;
  /** draft_only (default): approved drafts wait in Gmail; send_on_approval: approval sends. */
  mode?: SendMode;
  /** Milliseconds or a duration such as "72h" / "90s". Default 72 h. */
  approvalTimeout?: number | string;
  /** The mailbox that drafts (and sends). Default: the configured SENDER_EMAIL. */
  sender?: string;
  /** Who submitted (API key name, CLI user, webhook). */
  requestedBy?: string;
  /** Set by whoever submits, to tell a new intake from one it attached to. */
  submissionId?: string;
  /** Set only by the workflow itself when it continues as new at the gate: the gate's state. */
  resume?: GateCarry;
}

/**
 * What a run hands to its successor when a long wait at the gate (a flood of
 * refused signals) continues as new: everything the gate and the steps after
 * it need, nothing that grows without bound.
 */
export interface GateCarry {
  status: IntakeStatus;
  draft: DraftContent;
  draftId: string;
  taskId?: string;
  crm: { ownerId?: string; contactId: string; companyId?: string };
  deadlineMs: number;
  seq: number;
  refusalCount: number;
  requestIds: string[];
}

/** Milliseconds from a number or a duration string; undefined when neither. */
export function durationMs(value: number | string | undefined): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value === 'number') return Number.isFinite(value) && value > 0 ? value : undefined;
  const parsed = /^\d+$/.test(value.trim()) ? Number(value) : ms(value.trim() as ms.StringValue);
  return typeof parsed === 'number' && Number.isFinite(parsed) && parsed > 0 ? parsed : undefined;
}

// ---- signals (the approval gate) -------------------------------------------------------

/**
 * `approve`: the approver saw draft `version` and approves it. With `subject`
 * and/or `body` it is edit-then-approve: the edit becomes version+1, which is
 * what gets approved. A `version` other than the current one is refused.
 */
export interface ApprovePayload {
  version: number;
  approver: string;
  /** A signed approval token (required in production; see docs/intake.md). */
  token?: string;
  reason?: string;
  subject?: string;
  body?: string;
  /** Makes a retried API call land once. */
  requestId?: string;
}

/** `reject`: ends the intake as REJECTED (the draft is deleted). `version` is recorded, never required. */
export interface RejectPayload {
  approver: string;
  reason: string;
  token?: string;
  version?: number;
  requestId?: string;
}

/** `edit`: replaces subject and/or body of draft `version`, making version+1. Stale versions are refused. */
export interface EditPayload {
  version: number;
  editor: string;
  token?: string;
  subject?: string;
  body?: string;
  reason?: string;
  requestId?: string;
}


/**
 * Failure types of the send step (activities/intake/gmail.ts) after which
 * only a person can decide what happens: the intake ends NEEDS_HUMAN.
 */
export const SEND_REFUSALS = ['NotApproved', 'AlreadySent', 'DraftMissing', 'DraftChanged', 'SendingDisabled', 'SendRefused', 'SendOutcomeUnknown'] as const;

// ---- status query -----------------------------------------------------------------------

export interface Slot {
  start: string;
  end: string;
  /** In the prospect's time zone when known, else the sender's. */
  label: string;
  timeZone: string;
}

/** Evidence for the writer, each with where it came from: lib/domain/grounding.ts decides what counts. */
export type { Fact, FactSource } from './grounding.js';


export interface StepRecord {
  at: string;
  step: string;
  outcome: string;
  detail?: string;
}

export interface Refusal {
  at: string;
  signal: 'approve' | 'reject' | 'edit';
  by: string;
  version?: number;
  reason: string;
  requestId?: string;
}

export interface Decision {
  outcome: 'approved' | 'rejected' | 'expired';
  by?: string;
  version?: number;
  reason?: string;
  at: string;
  requestId?: string;
  /** Approved: the hash of the content approved; only that content may be sent. */
  contentHash?: string;
  /** The decision carried a valid signed token. */
  signed?: boolean;
}

export interface IntakeStatus {
  workflowId: string;
  runId: string;
  intakeKey: string;
  stage: Stage;
  approvalState: ApprovalStateValue;
  mode: SendMode;
  lead: { email: string; domain: string; name?: string; company?: string; title?: string; source?: string };
  sender: string;
  owner?: { id: string; email?: string; name?: string };
  crm?: { contactId: string; companyId?: string; taskId?: string; noteId?: string };
  draft?: DraftView;
  slots: Slot[];
  facts: Fact[];
  /**
   * The last draft's judgement: problems as sentences for people (each
   * rejected sentence quoted, with why), and the rejected sentences themselves.
   */
  grounding?: { attempts: number; problems: string[]; rejections: Rejection[] };
  approval?: { deadline: string; timeoutMs: number };
  decision?: Decision;
  sent?: { gmailMessageId: string; at: string; version: number };
  /** The latest refusals (all are in the audit trail); refusalCount counts every one. */
  refusals: Refusal[];
  refusalCount?: number;
  history: StepRecord[];
  /** Why the intake ended where it did (skip reason, failure, grounding problems). */
  reason?: string;
}

export interface IntakeResult {
  stage: Stage;
  reason?: string;
  draftVersion?: number;
  decision?: Decision;
}

// ---- effect keys ---------------------------------------------------------------------------


/** Business key of one side effect of one intake (HubSpot `prospector_key`, DB effect rows). */
export function effectKey(intakeKey: string, effect: 'contact' | 'task' | 'note' | 'decision-note' | 'draft' | 'send' | 'human-note' | 'human-task'): string {
  return `${intakeKey}:${effect}`;
}
