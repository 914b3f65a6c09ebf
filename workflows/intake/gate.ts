import type { DecisionRequest } from '../../lib/domain/approvals.js';
import type { Refusal } from '../../lib/domain/prospect.js';

/**
 * The approval gate's own rules, pure so the workflow can apply them to
 * every signal without an activity: what a signal must carry, when it is on
 * time, which version it may act on. What needs the outside world (is this a
 * registered approver, is the token genuine) is judged after this, once per
 * batch, by the intakeAuthorise activity (lib/domain/approvals.ts).
 */

export type SignalName = 'approve' | 'edit' | 'reject';

/**
 * Signals bigger than this are refused without being read further or copied
 * anywhere: the largest real decision (an edited 1,600-character body and a
 * 200-character subject, a reason, a token) is well under half of it.
 */
export const MAX_SIGNAL_BYTES = 16_384;

/** A signal as the workflow keeps it until the gate looks at it. */
export interface Inbound {
  signal: SignalName;
  /** The payload, or `{}` when it was not a JSON object or was too big. */
  payload: Record<string, unknown>;
  /** Whom the payload names (approver or editor), cleaned and cut; 'unknown' when nobody. */
  actor: string;
  /** Serialised size of the payload as received. */
  bytes: number;
  at: string;
  /** It arrived before the gate opened (no draft had been shown yet). */
  early: boolean;
}

/** What the gate looks like to a signal. */
export interface GateView {
  open: boolean;
  decided?: 'approved' | 'rejected' | 'expired';
  version: number;
}

/**
 * `lasting`: the refusal holds whatever happens next at the gate (everything
 * but a version ahead of the current one, which a later edit could make current).
 */
export type Screened = { ok: false; reason: string; lasting: boolean } | { ok: true; request: DecisionRequest };

const refused = (reason: string, lasting = true): Screened => ({ ok: false, reason, lasting });

/** A trimmed non-empty string or undefined; `collapse` folds whitespace (names, reasons). NUL cannot be stored in PostgreSQL text. */
export function clean(value: unknown, max: number, collapse = true): string | undefined {
  if (typeof value !== 'string') return undefined;
  const stripped = value.replace(/\u0000/g, '');
  const t = collapse ? stripped.replace(/\s+/g, ' ').trim() : stripped.trim();
  return t ? t.slice(0, max) : undefined;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Takes a raw signal in: measured, and dropped to `{}` when it is not something the gate reads. */
export function inbound(signal: SignalName, raw: unknown, at: string, early: boolean): Inbound {
  let bytes: number;
  try {
    bytes = JSON.stringify(raw ?? null).length;
  } catch {
    bytes = Number.POSITIVE_INFINITY;
  }
  const payload = isObject(raw) && bytes <= MAX_SIGNAL_BYTES ? raw : {};
  const named = isObject(raw) ? (signal === 'edit' ? raw.editor : raw.approver) : undefined;
  return { signal, payload, actor: clean(named, 200) ?? 'unknown', bytes, at, early };
}

/** "2" typed into a JSON payload by hand counts as 2. */
function versionOf(value: unknown): number | undefined {
  if (typeof value === 'string' && /^\d{1,9}$/.test(value)) return Number(value);
  return typeof value === 'number' && Number.isInteger(value) ? value : undefined;
}

/** Whether the signal may go on to authorisation, and as what; else why it is refused. */
export function screenSignal(msg: Inbound, gate: GateView): Screened {
  const p = msg.payload;
  if (msg.bytes > MAX_SIGNAL_BYTES) return refused(`the payload is ${Number.isFinite(msg.bytes) ? `${msg.bytes} bytes` : 'not serialisable'}; signals are limited to ${MAX_SIGNAL_BYTES} bytes`);
  if (gate.decided) return refused(`the intake was already decided (${gate.decided})`);
  if (!gate.open || (msg.early && msg.signal !== 'reject')) return refused('it arrived before the draft was ready for approval');
  if (msg.actor === 'unknown') return refused(`the payload names no ${msg.signal === 'edit' ? 'editor' : 'approver'}`);
  const token = p.token;
  if (token !== undefined && typeof token !== 'string') return refused('the approval token is malformed');

  if (msg.signal === 'reject') {
    return { ok: true, request: { action: 'reject', approver: msg.actor, version: versionOf(p.version), ...(token !== undefined ? { token } : {}) } };
  }
  const version = versionOf(p.version);
  if (p.version === undefined || p.version === null) return refused(`the payload names no draft version (the current version is ${gate.version})`);
  if (version !== gate.version) return refused(`draft version ${String(p.version).slice(0, 20)} is not the current version ${gate.version}`, version === undefined || version < gate.version);
  const subject = clean(p.subject, 5000, false);
  const body = clean(p.body, 5000, false);
  const edit = subject !== undefined || body !== undefined ? { ...(subject !== undefined ? { subject } : {}), ...(body !== undefined ? { body } : {}) } : undefined;
  if (msg.signal === 'edit' && !edit) return refused('an edit needs a subject or a body');
  return { ok: true, request: { action: msg.signal, approver: msg.actor, version, ...(edit ? { edit } : {}), ...(token !== undefined ? { token } : {}) } };
}

/** The record of one refused signal: small, whatever the payload held. */
export function refusalOf(msg: Inbound, reason: string): Refusal {
  const requestId = clean(msg.payload.requestId, 100);
  const version = versionOf(msg.payload.version);
  return { at: msg.at, signal: msg.signal, by: msg.actor, reason: reason.slice(0, 300), ...(version !== undefined ? { version } : {}), ...(requestId ? { requestId } : {}) };
}

/** How many recent refusals the status query and a continued run keep (all are in the audit trail). */
export const RECENT_REFUSALS = 20;
