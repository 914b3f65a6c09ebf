import { randomUUID } from 'node:crypto';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { SignalDefinition } from '@temporalio/common';
import { decidedDraft, issueApprovalToken, refusalFor } from '../../lib/domain/approvals.js';
import type { DecisionAction } from '../../lib/domain/approval-token.js';
import type { DraftContent, DraftEdit } from '../../lib/domain/draft.js';
import type { IntakeStatus } from '../../lib/domain/prospect.js';
import type { DraftView } from '../../lib/domain/draft.js';
import { decisionSignals, statusQuery } from '../../workflows/intake/messages.js';
import { findApprover } from '../../lib/store/approvers.js';
import { prospectRow as readProspectRow } from '../../lib/store/prospects.js';
import type { ApiDeps } from '../deps.js';
import { HttpProblem, problems } from '../problem.js';
import type { Caller } from '../route.js';

/**
 * An operator's decision on a waiting draft, taken through the API: the
 * approver is the caller's identity (never the request body), checked against
 * the registry here so the answer can say why not, then signed (an approval
 * token over the exact content the decision produces) and sent to the
 * workflow as the signal any other Temporal client would send. The workflow's
 * own judgement (intakeAuthorise) is final; this only refuses early.
 */

export interface DecisionInput {
  action: DecisionAction;
  /** The draft version the operator reviewed (approve, edit). */
  version?: number;
  edit?: DraftEdit;
  reason?: string;
}

export interface PreparedDecision {
  workflowId: string;
  approver: string;
  token: string;
  expiresAt: string;
  contentHash: string;
  /** The signal payload, without a request id. */
  payload: Record<string, unknown>;
}

/** A prospect's row, or 404. */
export async function prospectRow(deps: ApiDeps, id: string): Promise<Record<string, any>> {
  const row = await readProspectRow(deps.pool, id);
  if (!row) throw problems.notFound(`No prospect ${id}`);
  return row;
}

/** The workflow's `status` query, when a worker answers in time. */
export async function liveStatus(deps: ApiDeps, id: string): Promise<IntakeStatus | null> {
  try {
    const handle = deps.temporal.workflow.getHandle(id);
    return await deps.temporal.connection.withDeadline(Date.now() + 1_500, () => handle.query(statusQuery));
  } catch {
    return null;
  }
}

/** Checks, signs and shapes one decision by the caller; throws the problem an operator can act on. */
export async function prepareDecision(deps: ApiDeps, id: string, caller: Caller | undefined, d: DecisionInput): Promise<PreparedDecision> {
  const row = await prospectRow(deps, id);
  if (row.stage !== 'AWAITING_APPROVAL') throw problems.conflict(`Prospect ${id} is not awaiting approval (stage ${row.stage})`);
  if (!caller) throw new HttpProblem({ title: 'Forbidden', status: 403, detail: 'Decisions need an API key that belongs to a registered approver.' });
  const approver = caller.identity;
  const refused = refusalFor(await findApprover(deps.pool, approver), approver, d.action, { owner: row.owner ? { id: row.owner, email: row.owner } : undefined, domain: row.domain });
  if (refused) {
    throw new HttpProblem({ title: 'Forbidden', status: 403, detail: `This API key (${caller.keyId}) acts for ${approver}: ${refused}.`, identity: approver });
  }
  const live = await liveStatus(deps, id);
  const view = (live?.draft ?? row.data?.draft) as DraftView | undefined;
  if (!view) throw problems.conflict(`Prospect ${id} has no draft to decide on yet`);
  if (d.action !== 'reject' && d.version !== view.version) {
    throw new HttpProblem({ title: 'Conflict', status: 409, detail: `Draft version ${d.version} is stale: the current version is ${view.version}. Review it and decide on that one.`, currentVersion: view.version });
  }
  const current = draftOf(view, String(row.intake_key ?? live?.intakeKey ?? ''));
  const produced = decidedDraft(d, current);
  if (!produced.ok) throw new HttpProblem({ title: 'Unprocessable edit', status: 422, detail: `The edit cannot be applied: ${produced.problems.join('; ')}`, problems: produced.problems });
  const issued = issueApprovalToken(deps.config.approvals, { workflowId: id, action: d.action, version: view.version, content: produced.draft, approver, keyId: caller.keyId }, Date.now());
  const who = d.action === 'edit' ? { editor: approver } : { approver };
  const payload: Record<string, unknown> = {
    ...(d.action === 'reject' ? {} : { version: view.version }),
    ...who,
    ...(d.reason !== undefined ? { reason: d.reason } : {}),
    ...(d.edit?.subject !== undefined ? { subject: d.edit.subject } : {}),
    ...(d.edit?.body !== undefined ? { body: d.edit.body } : {}),
    token: issued.token,
  };
  return { workflowId: id, approver, token: issued.token, expiresAt: issued.expiresAt, contentHash: issued.contentHash, payload };
}

function draftOf(view: DraftView, intakeKey: string): DraftContent {
  if (!view.to || !view.from) throw problems.conflict('This draft was written before approvals were signed; decide on it in the Temporal UI or reject it');
  return {
    to: view.to,
    from: view.from,
    subject: view.subject,
    body: view.body,
    messageId: view.messageId,
    intakeKey,
    version: view.version,
    ...(view.reply ? { reply: view.reply } : {}),
  };
}

/** Delivers the decision as its signal; the request id makes a retried call land once. */
export async function sendDecision(deps: ApiDeps, prepared: PreparedDecision, action: DecisionAction, requestId: string = randomUUID()): Promise<string> {
  try {
    // The payload is shaped for the action by prepareDecision; the definitions only differ in its type.
    const signal = decisionSignals[action] as unknown as SignalDefinition<[Record<string, unknown>]>;
    await deps.temporal.workflow.getHandle(prepared.workflowId).signal(signal, { ...prepared.payload, requestId });
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw problems.conflict(`The intake for ${prepared.workflowId} is no longer running`);
    throw new HttpProblem({ title: 'Service unavailable', status: 503, detail: `The workflow service is unavailable (${(err as Error).message}); retry shortly.` });
  }
  return requestId;
}

/** The `temporal` CLI line that delivers a prepared decision (what --token-only prints). */
export function temporalCommand(prepared: PreparedDecision, action: DecisionAction, namespace: string): string {
  const input = JSON.stringify(prepared.payload).replace(/'/g, `'\\''`);
  return `temporal workflow signal --namespace ${namespace} --workflow-id '${prepared.workflowId}' --name ${action} --input '${input}'`;
}
