import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import type { Pool } from '../../lib/store/db.js';
import type { DraftContent } from '../../lib/domain/draft.js';
import { startIntake } from '../../api/services/start-intake.js';
import type { IntakeInput, IntakeStatus, LeadInput, Stage } from '../../lib/domain/prospect.js';
import { putApprover } from '../../lib/store/approvers.js';
import { statusQuery } from '../../workflows/intake/messages.js';

/** Shared by the intake test files: start, watch and inspect intakes. */

export function uniqueLead(overrides: Partial<LeadInput> = {}): LeadInput {
  const id = randomUUID().slice(0, 8);
  return { email: `lead-${id}@newco-${id}.example`, name: `Robin Vale`, company: `Newco ${id}`, source: 'test', ...overrides };
}

export async function submit(client: Client, taskQueue: string, lead: LeadInput, options: Omit<IntakeInput, 'lead'> = {}) {
  return startIntake(client, { sender: 'sales@prospector.example', submissionId: randomUUID(), ...options, lead }, { taskQueue });
}

export async function status(client: Client, workflowId: string): Promise<IntakeStatus> {
  return client.workflow.getHandle(workflowId).query(statusQuery);
}

/** Polls the status query until the stage is one of `stages` (or the timeout). */
export async function waitForStage(client: Client, workflowId: string, stages: Stage[], timeoutMs = 45_000): Promise<IntakeStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: IntakeStatus | undefined;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      last = await status(client, workflowId);
      if (stages.includes(last.stage)) return last;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`${workflowId} did not reach ${stages.join('|')} in ${timeoutMs} ms; last stage ${last?.stage} ${last ? JSON.stringify(last.history.slice(-4)) : String(lastError)}`);
}

export async function auditOf(pool: Pool, workflowId: string) {
  const { rows } = await pool.query('SELECT id, kind, action, outcome, actor, details, run_id FROM audit_events WHERE workflow_id = $1 ORDER BY id', [workflowId]);
  return rows.map((r) => ({ ...r, id: Number(r.id) })) as { id: number; kind: string; action: string; outcome: string; actor: string; details: any; run_id: string }[];
}

export interface SandboxMessage {
  id: string;
  threadId: string;
  to: string;
  subject: string;
  body: string;
  rfc822MessageId: string;
  headers: Record<string, string>;
  labelIds: string[];
}

export interface CrmObject {
  id: string;
  properties: Record<string, string>;
  associations: Record<string, string[]>;
}

/** What the sandbox holds for one intake: drafts, sent mail, tasks, notes. */
export async function effectsOf(sbx: { get<T>(path: string): Promise<T> }, intakeKey: string) {
  const mine = (m: SandboxMessage) => m.headers['x-prospector-intake']?.trim() === intakeKey;
  // Long headers arrive folded; the unfolded value keeps the fold's leading space.
  const tidy = (m: SandboxMessage) => ({ ...m, rfc822MessageId: m.rfc822MessageId?.trim() });
  const [drafts, sent, tasks, notes] = await Promise.all([
    sbx.get<SandboxMessage[]>('/_sandbox/google/drafts'),
    sbx.get<SandboxMessage[]>('/_sandbox/google/sent'),
    sbx.get<CrmObject[]>('/_sandbox/hubspot/tasks'),
    sbx.get<CrmObject[]>('/_sandbox/hubspot/notes'),
  ]);
  const keyed = (o: CrmObject) => o.properties.prospector_key?.startsWith(`${intakeKey}:`);
  return {
    drafts: drafts.filter(mine).map(tidy),
    sent: sent.filter(mine).map(tidy),
    tasks: tasks.filter(keyed),
    notes: notes.filter(keyed),
  };
}

/** Polls the read model (what the API answers from) until the prospect is in one of `stages`. */
export async function waitForReadModel(pool: Pool, workflowId: string, stages: Stage[], timeoutMs = 45_000): Promise<Record<string, any>> {
  const deadline = Date.now() + timeoutMs;
  let row: Record<string, any> | undefined;
  while (Date.now() < deadline) {
    row = (await pool.query('SELECT * FROM prospect_rows WHERE id = $1', [workflowId])).rows[0];
    if (row && stages.includes(row.stage)) return row;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${workflowId}: read model not in ${stages.join('|')} after ${timeoutMs} ms (stage ${row?.stage})`);
}

/** Puts these identities in the approver registry, allowed every decision. */
export async function registerApprovers(pool: Pool, identities: string[]): Promise<void> {
  for (const identity of identities) await putApprover(pool, { identity }, 'test');
}

/** The draft an intake shows, as the content it composes in Gmail. */
export function draftContent(st: IntakeStatus): DraftContent {
  const d = st.draft!;
  return { to: d.to, from: d.from, subject: d.subject, body: d.body, messageId: d.messageId, intakeKey: st.intakeKey, version: d.version, ...(d.reply ? { reply: d.reply } : {}) };
}
