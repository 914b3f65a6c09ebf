import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { intakeWorkflowId, type LeadInput, type SendMode } from '../../lib/domain/prospect.js';
import { normaliseEmail } from '../../lib/domain/email.js';
import { deploymentSends } from '../../lib/domain/send-policy.js';
import { fieldsWithoutNul } from '../../lib/domain/text.js';
import { storeSubmissions, type QueuedSubmission } from '../../lib/store/outbox.js';
import type { ApiDeps } from '../deps.js';
import { stepDuration } from '../metrics.js';
import { HttpProblem, problems } from '../problem.js';
import { outboxWriter, submissionSignal } from './intake-outbox.js';

/**
 * Taking a lead, for POST /v1/prospects and the HubSpot webhook alike: the
 * one place that decides what a submission is and where it goes.
 */

/** ApiDeps plus the task queue intakes run on (tests and benches use their own). */
export type IntakeApiDeps = ApiDeps & { intakeTaskQueue?: string };

/**
 * Where intakes are started: the workers' `prospecting` queue unless the
 * configuration names another (INTAKE_TASK_QUEUE). Tests and benches isolate
 * themselves with `intakeTaskQueue` in the deps or those settings.
 */
export function intakeTaskQueue(deps: IntakeApiDeps): string {
  return deps.intakeTaskQueue ?? deps.config.intake.taskQueue;
}

export interface SubmitResult {
  id: string;
  submissionId: string;
  status: 'queued' | 'attached';
  email: string;
  statusUrl: string;
}

export const statusUrl = (id: string) => `/v1/prospects/${encodeURIComponent(id)}`;

const leadNotStored = () =>
  new HttpProblem({ title: 'Service unavailable', status: 503, detail: 'The lead could not be stored right now; it was not taken, retry shortly.' });

/**
 * Takes a lead: validates and normalises it, then stores it in the intake
 * outbox together with its audit row, atomically (lib/store/outbox.ts), and
 * wakes the dispatchers after the commit. No call to Temporal: the answer does
 * not wait on the workflow service, and a lead is kept while it is down. Used
 * by POST /prospects and the HubSpot webhook; the webhook passes its own
 * transaction as `db` and wakes the dispatchers itself once it committed.
 */
export async function submitLead(
  deps: IntakeApiDeps,
  lead: LeadInput,
  options: { mode?: SendMode; approvalTimeout?: number | string; requestedBy: string; keyId?: string },
  db?: pg.PoolClient,
): Promise<SubmitResult> {
  const email = normaliseEmail(lead.email);
  if (!email.ok) throw problems.badRequest(`email: ${email.reason}`);
  const mode = options.mode ?? deps.config.outreach.sendMode;
  if (mode === 'send_on_approval' && !deploymentSends(deps.config)) {
    throw new HttpProblem({ title: 'Forbidden', status: 403, detail: 'send_on_approval is not enabled on this deployment (SEND_MODE=draft_only): an intake may only narrow the deployment\'s mode' });
  }
  const id = randomUUID();
  const submission: QueuedSubmission = {
    id,
    workflowId: intakeWorkflowId(email.email),
    domain: email.domain,
    keyId: options.keyId ?? null,
    taskQueue: intakeTaskQueue(deps),
    input: {
      lead: { ...fieldsWithoutNul(lead), email: email.email, source: lead.source ?? 'api' },
      mode,
      approvalTimeout: options.approvalTimeout ?? deps.config.outreach.approvalTimeoutMs,
      sender: deps.config.outreach.senderEmail,
      requestedBy: options.requestedBy,
      submissionId: id,
    },
  };
  let attached: boolean;
  const started = performance.now();
  try {
    attached = db ? (await storeSubmissions(db, [submission]))[0]! : await outboxWriter(deps.pool).write(submission);
  } catch (err) {
    // The submission id, not the workflow id: that one holds the person's email address.
    deps.log.warn({ err: (err as Error).message, submissionId: submission.id }, 'storing a lead failed');
    throw leadNotStored();
  }
  // Committed: wake the dispatchers. (A caller with its own transaction signals after its commit.)
  if (!db) {
    const ms = performance.now() - started;
    stepDuration.observe({ step: 'lead_store' }, ms / 1000);
    submissionSignal(deps.pool).submitted(ms);
  }
  return { id: submission.workflowId, submissionId: submission.id, status: attached ? 'attached' : 'queued', email: email.email, statusUrl: statusUrl(submission.workflowId) };
}
