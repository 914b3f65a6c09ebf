import type { Pool } from '../lib/store/db.js';
import { appendAudit } from '../lib/store/audit.js';

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
      await appendAudit(pool, event);
    },
  };
}
