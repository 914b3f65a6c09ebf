import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';

const { appendAudit } = proxyActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  retry: { maximumAttempts: 5, initialInterval: '200 ms' },
});

/**
 * Proves the whole chain end to end: the server schedules a workflow task,
 * the worker runs an activity that writes to PostgreSQL, the result returns.
 */
export async function smokeTest(note: string): Promise<{ workflowId: string; note: string }> {
  const { workflowId, runId } = workflowInfo();
  await appendAudit({
    eventKey: `${workflowId}:${runId}:smoke`,
    workflowId,
    runId,
    actor: 'system',
    kind: 'system',
    action: 'smoke_test',
    outcome: 'ok',
    details: { note },
  });
  return { workflowId, note };
}
