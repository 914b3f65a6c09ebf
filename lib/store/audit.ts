import type pg from 'pg';

/**
 * The audit trail (`audit_events`, append-only by trigger): who did what to
 * which intake, and how it ended. Every row goes through `appendAudit`.
 */

export interface AuditEvent {
  /** Business key: a retried write with the same key lands on the row it already wrote. */
  eventKey?: string;
  workflowId?: string;
  runId?: string;
  actor: string;
  kind: string;
  action: string;
  outcome: string;
  details?: Record<string, unknown>;
}

export type Queryable = pg.Pool | pg.PoolClient;

export async function appendAudit(db: Queryable, event: AuditEvent): Promise<void> {
  await db.query(
    `INSERT INTO audit_events (event_key, workflow_id, run_id, actor, kind, action, outcome, details)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (event_key) DO NOTHING`,
    [event.eventKey ?? null, event.workflowId ?? null, event.runId ?? null, event.actor, event.kind, event.action, event.outcome, event.details ?? {}],
  );
}

/** Several rows in one statement (refusals recorded in a batch). */
export async function appendAuditBatch(db: Queryable, events: AuditEvent[]): Promise<void> {
  if (!events.length) return;
  await db.query(
    `INSERT INTO audit_events (event_key, workflow_id, run_id, actor, kind, action, outcome, details)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[])
     ON CONFLICT (event_key) DO NOTHING`,
    [
      events.map((e) => e.eventKey ?? null),
      events.map((e) => e.workflowId ?? null),
      events.map((e) => e.runId ?? null),
      events.map((e) => e.actor),
      events.map((e) => e.kind),
      events.map((e) => e.action),
      events.map((e) => e.outcome),
      events.map((e) => JSON.stringify(e.details ?? {})),
    ],
  );
}

/**
 * An intake's audit trail: its own rows, and the submissions it took
 * (dispatched to it, or still waiting), oldest first.
 */
export async function auditOfIntake(db: Queryable, workflowId: string, intakeKey: string | null, limit = 500) {
  const { rows } = await db.query(
    `SELECT at, kind, action, outcome, actor, details FROM audit_events
      WHERE workflow_id = $1
        AND (run_id = $2::text OR details->>'intakeKey' = $2::text
             OR (action = 'submit' AND details->>'submissionId' IN (
                   SELECT d.details->>'submissionId' FROM audit_events d WHERE d.workflow_id = $1 AND d.action = 'dispatch' AND d.run_id = $2::text
                   UNION ALL
                   SELECT w.id::text FROM intake_submissions w WHERE w.workflow_id = $1 AND w.dispatched_at IS NULL)))
      ORDER BY id LIMIT $3`,
    [workflowId, intakeKey, limit],
  );
  return rows as { at: Date; kind: string; action: string; outcome: string; actor: string; details: Record<string, any> }[];
}

/** The latest row the workflow wrote for one decision request (its Idempotency-Key), if any yet. */
export async function decisionOutcome(db: Queryable, workflowId: string, requestId: string, actions: string[]): Promise<{ outcome: string; reason: string | null } | undefined> {
  const { rows } = await db.query(
    `SELECT outcome, details FROM audit_events
      WHERE workflow_id = $1 AND details->>'requestId' = $2 AND action = ANY($3::text[]) ORDER BY id DESC LIMIT 1`,
    [workflowId, requestId, actions],
  );
  return rows[0] ? { outcome: rows[0].outcome, reason: rows[0].details?.reason ?? null } : undefined;
}
