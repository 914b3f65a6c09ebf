import type { Pool } from '../lib/db.js';

/** One line of the audit trail: who did what to which workflow, and how it ended. */
export interface AuditEvent {
  /** Business key that makes a retried write land on the same row. */
  eventKey?: string;
  workflowId?: string;
  runId?: string;
  actor: string;
  kind: 'step' | 'signal' | 'decision' | 'api' | 'system';
  action: string;
  outcome: string;
  details?: Record<string, unknown>;
}

export interface AuditStore {
  appendAudit(event: AuditEvent): Promise<void>;
}

export function createAuditStore(pool: Pool): AuditStore {
  return {
    async appendAudit(event) {
      await pool.query(
        `INSERT INTO audit_events (event_key, workflow_id, run_id, actor, kind, action, outcome, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (event_key) DO NOTHING`,
        [event.eventKey ?? null, event.workflowId ?? null, event.runId ?? null, event.actor, event.kind, event.action, event.outcome, event.details ?? {}],
      );
    },
  };
}
