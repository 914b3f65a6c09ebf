import { contentOfDraft, contentHash, fieldHashes } from './approval-content.js';
import { signApprovalToken, verifyApprovalToken, type DecisionAction } from './approval-token.js';
import { editDraft, editsSomething, type DraftContent, type DraftEdit, type EditResult } from './draft.js';

/**
 * Who may decide on a draft, and whether a decision really comes from them.
 * One module judges every channel: the API before it signs a decision, and
 * the worker (intakeAuthorise) before the gate acts on any signal, whoever
 * sent it.
 *
 * - The approver must be in the registry, allowed the action, and (when the
 *   registry limits them) allowed this prospect's owner and domain.
 * - A signed token must be genuine, unexpired, for this intake and action,
 *   name the same approver and version, and (approve, edit) carry the hash of
 *   exactly the content the decision produces.
 * - In production every decision must be signed; in development an unsigned
 *   one is taken at its word for the approver's name, who must be registered.
 */

export interface DecisionRequest {
  action: DecisionAction;
  /** The approver (or editor) the payload names. */
  approver?: string;
  version?: number;
  token?: string;
  edit?: DraftEdit;
}

/** The intake a decision is about, as the gate knows it. */
export interface DecisionSubject {
  workflowId: string;
  /** The current draft version. */
  draft: DraftContent;
  owner?: { id?: string; email?: string };
  domain: string;
}

export type Verdict =
  | {
      ok: true;
      approver: string;
      /** Hash of the content the decision binds (the approved or edited-to version). */
      contentHash: string;
      fieldHashes: Record<string, string>;
      signed: boolean;
      keyId?: string;
    }
  | { ok: false; reason: string };

/** How decisions are signed here (lib/config/config.ts loads it). */
export interface ApprovalSettings {
  /** Signing secret first; a previous one still verifies during a rotation. */
  tokenSecrets: string[];
  tokenTtlMs: number;
  /** Every decision, whatever the channel, carries a signed token. */
  signedOnly: boolean;
}

/** What the approver registry (lib/store/approvers.ts) says an identity may do; null: any. */
export interface ApproverPolicy {
  actions: DecisionAction[];
  owners: string[] | null;
  domains: string[] | null;
}

/** The registry entry of an identity (lib/store/approvers.ts), or undefined when it has none. */
export type ApproverLookup = (identity: string) => Promise<ApproverPolicy | undefined>;

/** The draft a decision produces: the current one, or the edited next version. */
export function decidedDraft(request: Pick<DecisionRequest, 'action' | 'edit'>, current: DraftContent): EditResult {
  if (request.action === 'reject' || !request.edit || !editsSomething(request.edit)) return { ok: true, draft: current };
  return editDraft(current, request.edit);
}

const inDomain = (domain: string, allowed: string) => domain === allowed || domain.endsWith(`.${allowed}`);

/** Why this registered (or unknown) identity may not take this decision on this intake; undefined when it may. */
export function refusalFor(approver: ApproverPolicy | undefined, identity: string, action: DecisionAction, subject: Pick<DecisionSubject, 'owner' | 'domain'>): string | undefined {
  if (!approver) return `${identity} is not a registered approver`;
  if (!approver.actions.includes(action)) return `${identity} may not ${action} drafts (allowed: ${approver.actions.join(', ')})`;
  if (approver.domains && !approver.domains.some((d) => inDomain(subject.domain, d))) {
    return `${identity} may not decide for ${subject.domain || 'this prospect'}'s domain`;
  }
  if (approver.owners) {
    const owner = [subject.owner?.email, subject.owner?.id].filter((o): o is string => Boolean(o)).map((o) => o.toLowerCase());
    if (!owner.some((o) => approver.owners!.includes(o))) return `${identity} may not decide for prospects owned by ${owner[0] ?? 'nobody'}`;
  }
  return undefined;
}

/** The one judgement of a decision: its signature (or lack of one), its content, and the registry. */
export async function authoriseDecision(findApprover: ApproverLookup, settings: ApprovalSettings, request: DecisionRequest, subject: DecisionSubject, nowMs: number): Promise<Verdict> {
  if (request.token === undefined && settings.signedOnly) {
    return { ok: false, reason: 'unsigned: this deployment takes decisions only with a signed approval token (prospector prospects approve … --token-only)' };
  }
  const produced = decidedDraft(request, subject.draft);
  if (!produced.ok) return { ok: false, reason: `edit refused: ${produced.problems.join('; ')}` };
  const content = contentOfDraft(produced.draft);
  const hash = contentHash(content);

  let approver = request.approver?.trim().toLowerCase();
  let signed = false;
  let keyId: string | undefined;
  if (request.token !== undefined) {
    const checked = verifyApprovalToken(settings.tokenSecrets, request.token, nowMs);
    if (!checked.ok) return { ok: false, reason: checked.reason };
    const c = checked.claims;
    if (c.workflowId !== subject.workflowId) return { ok: false, reason: 'the approval token is for another intake' };
    if (c.action !== request.action) return { ok: false, reason: `the approval token is for ${c.action}, not ${request.action}` };
    if (approver && approver !== c.approver) return { ok: false, reason: `the approval token was issued to ${c.approver}, not ${approver}` };
    if (request.action !== 'reject') {
      if (c.version !== subject.draft.version) return { ok: false, reason: `the approval token is for draft version ${c.version}, not the current version ${subject.draft.version}` };
      if (c.contentHash !== hash) return { ok: false, reason: 'the approval token was signed for other content than this decision produces' };
    }
    approver = c.approver;
    signed = true;
    keyId = c.keyId;
  }
  if (!approver) return { ok: false, reason: 'the decision names no approver' };
  const refused = refusalFor(await findApprover(approver), approver, request.action, subject);
  if (refused) return { ok: false, reason: refused };
  return { ok: true, approver, contentHash: hash, fieldHashes: fieldHashes(content), signed, ...(keyId ? { keyId } : {}) };
}

/** A token for one decision by an authenticated approver (the API issues these). */
export function issueApprovalToken(
  settings: ApprovalSettings,
  d: { workflowId: string; action: DecisionAction; version: number; content: DraftContent; approver: string; keyId?: string },
  nowMs: number,
): { token: string; expiresAt: string; contentHash: string } {
  const hash = contentHash(contentOfDraft(d.content));
  const expiresAt = Math.floor((nowMs + settings.tokenTtlMs) / 1000);
  const token = signApprovalToken(settings.tokenSecrets[0]!, {
    workflowId: d.workflowId,
    action: d.action,
    version: d.version,
    contentHash: hash,
    approver: d.approver,
    expiresAt,
    issuedAt: Math.floor(nowMs / 1000),
    ...(d.keyId ? { keyId: d.keyId } : {}),
  });
  return { token, expiresAt: new Date(expiresAt * 1000).toISOString(), contentHash: hash };
}
