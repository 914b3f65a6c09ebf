import type { Pool } from '../lib/store/db.js';
import { appendAudit, type AuditEvent } from '../lib/store/audit.js';

export type { AuditEvent };

/** The audit trail as an activity: what a workflow records beside its own steps (the harvest's summary line). */
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
