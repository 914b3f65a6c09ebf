import type { Client } from '@temporalio/client';
import { intakeWorkflowId, type IntakeInput } from '../../lib/domain/prospect.js';
import { normaliseEmail } from '../../lib/domain/email.js';
import { ApprovalState, ProspectDomain, ProspectStage } from '../../lib/domain/search-attributes.js';
import { INTAKE_WORKFLOW } from '../../workflows/intake/messages.js';

/** Starting an intake in Temporal: the dispatcher (API and webhook leads) and the tests. */

export interface StartIntakeOptions {
  taskQueue: string;
  workflowId?: string;
  /**
   * More start options, passed through to `workflow.start` (the intake
   * dispatcher sets the start request id this way: see api/services/intake-dispatcher.ts).
   */
  startOptions?: Record<PropertyKey, unknown>;
}

/** Memo of an intake run: which submission started it (the dispatcher tells "started" from "attached" by it). */
export interface IntakeMemo {
  submissionId?: string;
}

/**
 * Starts the intake for a normalised lead, or attaches to the one already
 * running for the same person (USE_EXISTING). Returns the run it landed on.
 */
export async function startIntake(client: Client, input: IntakeInput, options: StartIntakeOptions): Promise<{ workflowId: string; runId: string }> {
  const email = normaliseEmail(input.lead.email);
  if (!email.ok) throw new Error(`cannot start an intake: ${email.reason}`);
  const workflowId = options.workflowId ?? intakeWorkflowId(email.email);
  const memo: IntakeMemo | undefined = input.submissionId ? { submissionId: input.submissionId } : undefined;
  const handle = await client.workflow.start(INTAKE_WORKFLOW, {
    ...options.startOptions,
    taskQueue: options.taskQueue,
    workflowId,
    args: [{ ...input, lead: { ...input.lead, email: email.email } }],
    workflowIdConflictPolicy: 'USE_EXISTING',
    memo: memo as Record<string, unknown> | undefined,
    // Listed at once in the Web UI: "all intakes for acme.example", "all submitted".
    typedSearchAttributes: [
      { key: ProspectDomain, value: email.domain },
      { key: ProspectStage, value: 'SUBMITTED' },
      { key: ApprovalState, value: 'NONE' },
    ],
  });
  return { workflowId, runId: handle.firstExecutionRunId };
}
