import type pg from 'pg';
import type { IntakeInput } from '../domain/prospect.js';
import { appendAudit, appendAuditBatch, type Queryable } from './audit.js';
import { inTransaction, type Pool } from './db.js';

/**
 * The intake outbox (`intake_submissions`): leads stored by the API and the
 * HubSpot webhook, waiting for a dispatcher to start their intakes. The only
 * module that writes the table; the dispatcher's claims, records and
 * back-offs, and the submissions' audit rows (through lib/store/audit.ts),
 * go through here.
 */

/** One lead, validated and normalised, ready to store. */
export interface QueuedSubmission {
  id: string;
  workflowId: string;
  domain: string;
  keyId: string | null;
  taskQueue: string;
  input: IntakeInput & { submissionId: string; requestedBy: string };
}

/**
 * Stores submissions and their audit rows, in one transaction (the caller's,
 * when it passes a client). Returns "attached" per submission, in order: an
 * intake for that person is active, or a submission for it is already
 * waiting, or an earlier one in this batch is for the same person.
 */
export async function storeSubmissions(db: Queryable, submissions: QueuedSubmission[]): Promise<boolean[]> {
  const store = async (client: Queryable) => {
    const attached = await insertSubmissions(client, submissions);
    await appendAuditBatch(
      client,
      submissions.map((s, i) => ({
        eventKey: `submit:${s.id}`,
        workflowId: s.workflowId,
        actor: s.input.requestedBy,
        kind: 'api',
        action: 'submit',
        outcome: attached[i] ? 'attached' : 'queued',
        details: { source: s.input.lead.source ?? 'api', submissionId: s.id, keyId: s.keyId, mode: s.input.mode ?? null },
      })),
    );
    return attached;
  };
  return 'release' in db ? store(db) : inTransaction(db as Pool, store);
}

async function insertSubmissions(db: Queryable, submissions: QueuedSubmission[]): Promise<boolean[]> {
  const seen = new Set<string>();
  const repeated = submissions.map((s) => {
    const again = seen.has(s.workflowId);
    seen.add(s.workflowId);
    return again;
  });
  const column = <T>(pick: (s: QueuedSubmission) => T) => submissions.map(pick);
  const { rows } = await db.query(
    `WITH batch AS (
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bool[])
                WITH ORDINALITY AS b(id, workflow_id, input, domain, requested_by, key_id, task_queue, repeated, ord)
     ), judged AS (
       SELECT b.*,
              b.repeated
              OR EXISTS (SELECT 1 FROM prospects p WHERE p.id = b.workflow_id AND NOT p.ended)
              OR EXISTS (SELECT 1 FROM intake_submissions s WHERE s.workflow_id = b.workflow_id AND s.dispatched_at IS NULL) AS attached
         FROM batch b
     ), stored AS (
       INSERT INTO intake_submissions (id, workflow_id, input, domain, requested_by, key_id, task_queue)
       SELECT id::uuid, workflow_id, input::jsonb, domain, requested_by, key_id, task_queue FROM judged ORDER BY ord
     )
     SELECT attached FROM judged ORDER BY ord`,
    [
      column((s) => s.id),
      column((s) => s.workflowId),
      column((s) => JSON.stringify(s.input)),
      column((s) => s.domain),
      column((s) => s.input.requestedBy),
      column((s) => s.keyId),
      column((s) => s.taskQueue),
      repeated,
    ],
  );
  return rows.map((r) => r.attached as boolean);
}

/** Undispatched submissions: how many, and how long the oldest has waited. */
export interface OutboxDepth {
  pending: number;
  oldestAgeSeconds: number;
}

export async function outboxDepth(db: Queryable): Promise<OutboxDepth> {
  const { rows } = await db.query(
    `SELECT count(*)::int AS pending, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS oldest
       FROM intake_submissions WHERE dispatched_at IS NULL`,
  );
  return { pending: rows[0].pending, oldestAgeSeconds: rows[0].oldest };
}

export interface ClaimedSubmission {
  id: string;
  workflow_id: string;
  input: IntakeInput;
  task_queue: string;
  attempts: number;
}

/**
 * Due rows, oldest first, leased for `leaseMs` so no other dispatcher takes
 * them meanwhile. Only a person's oldest waiting submission is due: the one
 * that was told "queued" must be the one that starts the intake (with its lead
 * text), and the later ones join it once it has.
 */
export async function claimDue(db: Queryable, limit: number, leaseMs: number): Promise<ClaimedSubmission[]> {
  const { rows } = await db.query(
    `UPDATE intake_submissions s
        SET attempts = s.attempts + 1, next_attempt_at = now() + $2 * interval '1 millisecond'
      WHERE s.id IN (SELECT id FROM intake_submissions d
                      WHERE dispatched_at IS NULL AND next_attempt_at <= now()
                        AND NOT EXISTS (SELECT 1 FROM intake_submissions e
                                         WHERE e.workflow_id = d.workflow_id AND e.dispatched_at IS NULL
                                           AND e.seq < d.seq)
                      ORDER BY next_attempt_at, seq
                      LIMIT $1
                      FOR UPDATE SKIP LOCKED)
     RETURNING s.id::text AS id, s.workflow_id, s.input, s.task_queue, s.attempts`,
    [limit, leaseMs],
  );
  return rows as ClaimedSubmission[];
}

/** The row is dispatched, to the run it started or joined, with its audit row. */
export async function recordDispatched(pool: Pool, id: string, runId: string, outcome: 'started' | 'attached'): Promise<void> {
  await inTransaction(pool, async (db: pg.PoolClient) => {
    const { rows } = await db.query(
      `UPDATE intake_submissions SET dispatched_at = now(), run_id = $2, outcome = $3, last_error = NULL
        WHERE id = $1::text::uuid AND dispatched_at IS NULL
       RETURNING workflow_id, attempts`,
      [id, runId, outcome],
    );
    if (!rows[0]) return;
    await appendAudit(db, {
      eventKey: `dispatch:${id}`,
      workflowId: rows[0].workflow_id,
      runId,
      actor: 'intake-dispatcher',
      kind: 'api',
      action: 'dispatch',
      outcome,
      details: { intakeKey: runId, submissionId: id, attempts: rows[0].attempts },
    });
  });
}

/** A failed start: the row stays, due again after `delayMs`, with the reason. */
export async function backOff(db: Queryable, id: string, error: string, delayMs: number): Promise<void> {
  await db.query(
    `UPDATE intake_submissions SET last_error = left($2, 1000), next_attempt_at = now() + $3 * interval '1 millisecond'
      WHERE id = $1::text::uuid AND dispatched_at IS NULL`,
    [id, error, Math.round(delayMs)],
  );
}

/** Claimed but not attempted (a dispatcher closing): due again at once, for any replica. */
export async function releaseClaims(db: Queryable, ids: string[]): Promise<void> {
  await db.query(`UPDATE intake_submissions SET next_attempt_at = now(), attempts = GREATEST(attempts - 1, 0) WHERE id = ANY($1::uuid[]) AND dispatched_at IS NULL`, [ids]);
}

/** Dispatched rows older than `retentionMs` go (their audit rows stay). */
export async function pruneDispatched(db: Queryable, retentionMs: number): Promise<void> {
  await db.query(`DELETE FROM intake_submissions WHERE dispatched_at < now() - $1 * interval '1 millisecond'`, [retentionMs]);
}

/** Intakes started in the last 10 minutes whose run has not taken them up yet (no read-model row of theirs). */
export async function startedNotTakenUp(db: Queryable): Promise<number> {
  const { rows } = await db.query(
    `SELECT count(*)::int AS n FROM intake_submissions s
      WHERE s.outcome = 'started' AND s.dispatched_at > now() - interval '10 minutes'
        AND NOT EXISTS (SELECT 1 FROM prospects p WHERE p.id = s.workflow_id AND p.intake_key = s.run_id)`,
  );
  return rows[0].n;
}
