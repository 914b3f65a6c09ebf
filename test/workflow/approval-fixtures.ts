import type { Client } from '@temporalio/client';
import type { SignalDefinition } from '@temporalio/common';
import { issueApprovalToken, type ApprovalSettings } from '../../lib/domain/approvals.js';
import type { DecisionAction } from '../../lib/domain/approval-token.js';
import { loadConfig, type Config } from '../../lib/config/config.js';
import { editDraft, type DraftEdit } from '../../lib/domain/draft.js';
import type { IntakeStatus } from '../../lib/domain/prospect.js';
import { decisionSignals } from '../../workflows/intake/messages.js';
import { draftContent, status } from './intake-helpers.js';

/** What the approval-integrity tests share: a production-rules worker config, and signing as an approver would. */

export const TOKEN_SECRET = 'test-approval-secret-0123456789abcdef0123';

/**
 * A worker configuration with production's approval rules (signed decisions
 * only, a real secret) and the given send mode. The providers stay on the
 * sandbox, which a real production configuration refuses.
 */
export async function productionRules(sandboxUrl: string, overrides: Record<string, string> = {}): Promise<Config> {
  const config = await loadConfig({ env: {}, overrides: { SANDBOX_URL: sandboxUrl, APPROVAL_TOKEN_SECRET: TOKEN_SECRET, ...overrides } });
  return { ...config, approvals: { ...config.approvals, signedOnly: true } };
}

/** A decision's signal payload, signed for exactly the content it produces (what the API issues to an approver). */
export function signedDecision(
  settings: ApprovalSettings,
  st: IntakeStatus,
  d: { action: DecisionAction; approver: string; edit?: DraftEdit; reason?: string; version?: number },
): Record<string, unknown> {
  const current = draftContent(st);
  const version = d.version ?? current.version;
  const produced = d.edit ? editDraft(current, d.edit) : { ok: true as const, draft: current };
  if (!produced.ok) throw new Error(`the edit cannot be applied: ${produced.problems.join('; ')}`);
  const { token } = issueApprovalToken(settings, { workflowId: st.workflowId, action: d.action, version, content: produced.draft, approver: d.approver }, Date.now());
  return {
    ...(d.action === 'reject' ? {} : { version }),
    ...(d.action === 'edit' ? { editor: d.approver } : { approver: d.approver }),
    ...(d.edit ?? {}),
    ...(d.reason ? { reason: d.reason } : {}),
    token,
  };
}

/**
 * Sends a decision signal with any payload, as a raw Temporal client can
 * (malformed and hostile ones included: that is what these tests send).
 */
export async function signalDecision(client: Client, workflowId: string, action: DecisionAction, payload: unknown): Promise<void> {
  const signal = decisionSignals[action] as unknown as SignalDefinition<[unknown]>;
  await client.workflow.getHandle(workflowId).signal(signal, payload);
}

/** Sends a signed decision on the intake's current draft, as any Temporal client can. */
export async function decide(client: Client, settings: ApprovalSettings, workflowId: string, d: Parameters<typeof signedDecision>[2]): Promise<Record<string, unknown>> {
  const payload = signedDecision(settings, await status(client, workflowId), d);
  await signalDecision(client, workflowId, d.action, payload);
  return payload;
}
