import { inTransaction, type Pool } from './db.js';
import { END_STAGES, type ApprovalStateValue, type SendMode, type Stage } from '../domain/prospect.js';
import { appendAudit, type AuditEvent, type Queryable } from './audit.js';

/**
 * The prospects read model (`prospects`, one row per person: their latest
 * intake), written only here, from the intake's activities; and the intake's
 * audit rows, keyed by run and step. Every intake activity ends by committing
 * its audit row and its read-model change in one transaction, so the two
 * never disagree.
 */

/** Where an intake stands, stamped by the workflow on every activity call. */
export interface ProgressStamp {
  workflowId: string;
  runId: string;
  intakeKey: string;
  /** The run's start time (ISO); a newer intake of the same person replaces the row, an older one never does. */
  runStartedAt: string;
  /** Increases with every step; a late write from an earlier step is ignored. */
  seq: number;
  /** The stage the intake is in once this activity succeeds. */
  stage: Stage;
  approvalState: ApprovalStateValue;
  mode: SendMode;
  draftVersion: number;
  lead: { email: string; domain: string; name?: string; company?: string; source?: string };
  owner?: string;
  submissionId?: string;
}

export interface ReadModelPatch {
  subject?: string;
  reason?: string;
  approvalDeadline?: string;
  /** Merged into prospects.data (shallow). */
  data?: Record<string, unknown>;
}

export interface AuditEntry {
  /** Distinguishes several audit rows of one step (e.g. `write:2`); defaults to the action. */
  key?: string;
  actor?: string;
  kind: 'step' | 'signal' | 'decision' | 'api' | 'system';
  action: string;
  outcome: string;
  details?: Record<string, unknown>;
}


/**
 * Audit key of one event of one run: retries of the same step write the same
 * row once. The run id (not the intake key) keeps a reset run's rows apart
 * from the rows of the run it replaced.
 */
export function auditKey(stamp: Pick<ProgressStamp, 'runId' | 'seq'>, key: string): string {
  return `${stamp.runId}:${stamp.seq}:${key}`;
}

export async function appendIntakeAudit(db: Queryable, stamp: ProgressStamp, entry: AuditEntry): Promise<void> {
  await appendAudit(db, intakeAuditEvent(stamp, entry));
}

export function intakeAuditEvent(stamp: ProgressStamp, entry: AuditEntry): AuditEvent {
  return {
    eventKey: auditKey(stamp, entry.key ?? entry.action),
    workflowId: stamp.workflowId,
    runId: stamp.runId,
    actor: entry.actor ?? 'prospector',
    kind: entry.kind,
    action: entry.action,
    outcome: entry.outcome,
    details: { intakeKey: stamp.intakeKey, stage: stamp.stage, ...(entry.details ?? {}) },
  };
}

/**
 * Upserts the read model row of this person. The same run merges: only a step
 * at least as late as the stored one wins (an attempt of an earlier step that
 * finishes late, after its worker was given up for dead, changes nothing); a
 * later run of the same intake (continued-as-new, or a reset) takes over from
 * an earlier one; a different intake replaces the row only when it started
 * later.
 */
export async function writeReadModel(db: Queryable, stamp: ProgressStamp, patch: ReadModelPatch = {}): Promise<void> {
  const values = [
    stamp.workflowId,
    stamp.runId,
    stamp.intakeKey,
    stamp.runStartedAt,
    stamp.lead.email,
    stamp.lead.domain,
    stamp.lead.name ?? null,
    stamp.lead.company ?? null,
    stamp.owner ?? null,
    stamp.lead.source ?? 'api',
    stamp.stage,
    stamp.approvalState,
    stamp.draftVersion,
    patch.subject ?? null,
    patch.reason ?? null,
    patch.data ?? {},
    stamp.mode,
    stamp.submissionId ?? null,
    patch.approvalDeadline ?? null,
    stamp.seq,
    END_STAGES.includes(stamp.stage),
  ];
  await db.query(
    `INSERT INTO prospects AS p (id, run_id, intake_key, run_started_at, email, domain, name, company, owner, source, stage,
                                 approval_state, draft_version, subject, reason, data, mode, submission_id, approval_deadline, state_seq, ended)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
     ON CONFLICT (id) DO UPDATE SET
       run_id = EXCLUDED.run_id,
       intake_key = EXCLUDED.intake_key,
       run_started_at = EXCLUDED.run_started_at,
       email = EXCLUDED.email,
       domain = EXCLUDED.domain,
       name = CASE WHEN p.intake_key = EXCLUDED.intake_key THEN COALESCE(EXCLUDED.name, p.name) ELSE EXCLUDED.name END,
       company = CASE WHEN p.intake_key = EXCLUDED.intake_key THEN COALESCE(EXCLUDED.company, p.company) ELSE EXCLUDED.company END,
       owner = CASE WHEN p.intake_key = EXCLUDED.intake_key THEN COALESCE(EXCLUDED.owner, p.owner) ELSE EXCLUDED.owner END,
       source = EXCLUDED.source,
       stage = EXCLUDED.stage,
       approval_state = EXCLUDED.approval_state,
       draft_version = EXCLUDED.draft_version,
       subject = CASE WHEN p.intake_key = EXCLUDED.intake_key THEN COALESCE(EXCLUDED.subject, p.subject) ELSE EXCLUDED.subject END,
       reason = CASE WHEN p.intake_key = EXCLUDED.intake_key THEN COALESCE(EXCLUDED.reason, p.reason) ELSE EXCLUDED.reason END,
       data = CASE WHEN p.intake_key = EXCLUDED.intake_key THEN p.data || EXCLUDED.data ELSE EXCLUDED.data END,
       mode = EXCLUDED.mode,
       submission_id = CASE WHEN p.intake_key = EXCLUDED.intake_key THEN COALESCE(p.submission_id, EXCLUDED.submission_id) ELSE EXCLUDED.submission_id END,
       approval_deadline = CASE WHEN p.intake_key = EXCLUDED.intake_key THEN COALESCE(EXCLUDED.approval_deadline, p.approval_deadline) ELSE EXCLUDED.approval_deadline END,
       state_seq = EXCLUDED.state_seq,
       ended = EXCLUDED.ended,
       created_at = CASE WHEN p.intake_key = EXCLUDED.intake_key THEN p.created_at ELSE now() END,
       updated_at = now()
     WHERE (p.intake_key = EXCLUDED.intake_key AND p.run_id = EXCLUDED.run_id AND p.state_seq <= EXCLUDED.state_seq)
        OR (p.intake_key = EXCLUDED.intake_key AND p.run_id IS DISTINCT FROM EXCLUDED.run_id AND p.run_started_at <= EXCLUDED.run_started_at)
        OR (p.intake_key IS DISTINCT FROM EXCLUDED.intake_key AND p.run_started_at <= EXCLUDED.run_started_at)`,
    values,
  );
}

/** The audit row and the read model change of one step, together. */
export async function commitStep(pool: Pool, stamp: ProgressStamp, audit: AuditEntry, patch: ReadModelPatch = {}): Promise<void> {
  await inTransaction(pool, async (client) => {
    await appendIntakeAudit(client, stamp, audit);
    await writeReadModel(client, stamp, patch);
  });
}

// ---- reads: the prospect_rows view (the read model, or a submission waiting for its run) ----------

export interface ProspectFilter {
  stages?: string[];
  approvalState?: string;
  domain?: string;
  owner?: string;
}

/** One person's row, by workflow id. */
export async function prospectRow(db: Queryable, id: string): Promise<Record<string, any> | undefined> {
  const { rows } = await db.query('SELECT * FROM prospect_rows WHERE id = $1', [id]);
  return rows[0];
}

/** A page of rows, newest activity first, after the (updated_at, id) of the previous page's last row. */
export async function listProspects(db: Queryable, filter: ProspectFilter, limit: number, after?: [string, string]): Promise<(Record<string, any> & { cursor_at: string })[]> {
  const where: string[] = [];
  const values: unknown[] = [];
  const add = (sql: string, value: unknown) => {
    values.push(value);
    where.push(sql.replace('?', `$${values.length}`));
  };
  if (filter.stages) add('stage = ANY(?::text[])', filter.stages);
  if (filter.approvalState) add('approval_state = ?', filter.approvalState);
  if (filter.domain) add('domain = ?', filter.domain);
  if (filter.owner) add('owner = ?', filter.owner);
  if (after) {
    values.push(after[0], after[1]);
    where.push(`(updated_at, id) < ($${values.length - 1}::timestamptz, $${values.length})`);
  }
  values.push(limit);
  const { rows } = await db.query(
    `SELECT *, updated_at::text AS cursor_at FROM prospect_rows ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY updated_at DESC, id DESC LIMIT $${values.length}`,
    values,
  );
  return rows;
}
