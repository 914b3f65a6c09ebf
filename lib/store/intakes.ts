import type pg from 'pg';
import type { ScreenDecision } from '../domain/screening.js';
import type { SkipReason } from '../domain/prospect.js';
import type { Queryable } from './audit.js';

/**
 * The contact history (`intakes`, one row per intake, written by its
 * screening step and closed with its end stage): what the re-contact window
 * and the daily caps count. The only module that writes the table.
 */

/** Serialises screening decisions (caps are counted, then claimed). */
const SCREEN_LOCK = 'prospector:intake-screen';

/** Taken inside the screening transaction: 50 intakes screened at once cannot all squeeze under a cap. */
export async function lockScreening(db: pg.PoolClient): Promise<void> {
  await db.query('SELECT pg_advisory_xact_lock(hashtext($1))', [SCREEN_LOCK]);
}

/** The decision this intake's screening already made (a retried step returns it). */
export async function earlierDecision(db: Queryable, intakeKey: string): Promise<ScreenDecision | undefined> {
  const { rows } = await db.query('SELECT accepted, reason FROM intakes WHERE intake_key = $1', [intakeKey]);
  if (!rows[0]) return undefined;
  if (rows[0].accepted) return { accepted: true };
  const [reason, ...detail] = String(rows[0].reason).split(': ');
  return { accepted: false, reason: reason as SkipReason, detail: detail.join(': ') };
}

/** The last accepted intake of this person inside the window, other than this one; FAILED ones do not count. */
export async function lastContact(db: Queryable, email: string, intakeKey: string, windowDays: number): Promise<string | undefined> {
  if (windowDays <= 0) return undefined;
  const { rows } = await db.query(
    `SELECT created_at FROM intakes
      WHERE email = $1 AND accepted AND intake_key <> $2 AND COALESCE(final_stage, '') <> 'FAILED'
        AND created_at > now() - make_interval(days => $3)
      ORDER BY created_at DESC LIMIT 1`,
    [email, intakeKey, windowDays],
  );
  return rows[0] ? new Date(rows[0].created_at).toISOString() : undefined;
}

/** Accepted intakes today (UTC) for this domain and for this sender. */
export async function countsToday(db: Queryable, domain: string, sender: string): Promise<{ domain: number; sender: number }> {
  const { rows } = await db.query(
    `SELECT count(*) FILTER (WHERE domain = $1)::int AS domain, count(*) FILTER (WHERE sender = $2)::int AS sender
       FROM intakes WHERE accepted AND day = (now() AT TIME ZONE 'UTC')::date AND (domain = $1 OR sender = $2)`,
    [domain, sender],
  );
  return rows[0];
}

export async function recordDecision(
  db: Queryable,
  intake: { intakeKey: string; workflowId: string; runId: string; email: string; domain: string; sender: string },
  decision: ScreenDecision,
): Promise<void> {
  await db.query(
    `INSERT INTO intakes (intake_key, workflow_id, run_id, email, domain, sender, accepted, reason)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [intake.intakeKey, intake.workflowId, intake.runId, intake.email, intake.domain, intake.sender, decision.accepted, decision.accepted ? null : `${decision.reason}: ${decision.detail}`],
  );
}

/** The end of an intake, for the contact history (a FAILED intake does not count as contact). */
export async function recordFinalStage(db: Queryable, intakeKey: string, stage: string): Promise<void> {
  await db.query('UPDATE intakes SET final_stage = $2, updated_at = now() WHERE intake_key = $1', [intakeKey, stage]);
}
