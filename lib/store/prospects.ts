import type pg from 'pg';
import { inTransaction, type Pool } from './db.js';
import type { ApprovalStateValue, SendMode, Stage } from '../domain/prospect.js';
import { appendAudit, type AuditEvent } from './audit.js';

/**
 * PostgreSQL side of the intake: the prospects read model, the audit trail,
 * and the keyed records that make side effects idempotent (effects, approvals,
 * sends). Every intake activity ends by committing its audit row and its read
 * model change in one transaction, so the two never disagree.
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

type Queryable = Pool | pg.PoolClient;

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
 * Upserts the read model row of this person. The same run merges (only a step
 * at least as late as the stored one wins); a later run of the same intake
 * (continued-as-new, or a reset) takes over from an earlier one; a different
 * intake replaces the row only when it started later.
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
  ];
  await db.query(
    `INSERT INTO prospects AS p (id, run_id, intake_key, run_started_at, email, domain, name, company, owner, source, stage,
                                 approval_state, draft_version, subject, reason, data, mode, submission_id, approval_deadline, state_seq)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
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
       updated_at = now()
     WHERE (p.intake_key = EXCLUDED.intake_key AND p.run_id = EXCLUDED.run_id AND p.state_seq <= EXCLUDED.state_seq)
        OR (p.intake_key = EXCLUDED.intake_key AND p.run_id IS DISTINCT FROM EXCLUDED.run_id AND p.run_started_at <= EXCLUDED.run_started_at)
        OR (p.intake_key IS DISTINCT FROM EXCLUDED.intake_key AND (p.run_started_at IS NULL OR p.run_started_at <= EXCLUDED.run_started_at))`,
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

// ---- keyed effects -------------------------------------------------------------

export interface EffectRow {
  effect_key: string;
  external_id: string;
  data: Record<string, unknown>;
}

export async function findEffect(db: Queryable, key: string): Promise<EffectRow | undefined> {
  const { rows } = await db.query<EffectRow>('SELECT effect_key, external_id, data FROM intake_effects WHERE effect_key = $1', [key]);
  return rows[0];
}

/**
 * Records the provider id of an effect. The first id recorded for a key stays
 * (a second create must never win), unless `replace` says the recorded object
 * is gone from the provider and this one stands in for it.
 */
export async function recordEffect(
  db: Queryable,
  intakeKey: string,
  key: string,
  kind: string,
  externalId: string,
  data: Record<string, unknown> = {},
  options: { replace?: boolean } = {},
): Promise<EffectRow> {
  const { rows } = await db.query<EffectRow>(
    `INSERT INTO intake_effects (effect_key, intake_key, kind, external_id, data)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (effect_key) DO UPDATE SET data = intake_effects.data || EXCLUDED.data, updated_at = now(),
       external_id = CASE WHEN $6 THEN EXCLUDED.external_id ELSE intake_effects.external_id END
     RETURNING effect_key, external_id, data`,
    [key, intakeKey, kind, externalId, data, options.replace ?? false],
  );
  return rows[0]!;
}

// ---- settings ---------------------------------------------------------------------

export interface IntakeSettings {
  paused: boolean;
  pausedReason: string | null;
  recontactWindowDays: number;
  domainDailyCap: number;
  senderDailyCap: number;
  senderCompany: string;
  senderTimeZone: string;
  workingHoursStart: string;
  workingHoursEnd: string;
  updatedBy: string | null;
  updatedAt: string;
}

const SETTINGS_COLUMNS: Record<keyof Omit<IntakeSettings, 'updatedAt'>, string> = {
  paused: 'paused',
  pausedReason: 'paused_reason',
  recontactWindowDays: 'recontact_window_days',
  domainDailyCap: 'domain_daily_cap',
  senderDailyCap: 'sender_daily_cap',
  senderCompany: 'sender_company',
  senderTimeZone: 'sender_time_zone',
  workingHoursStart: 'working_hours_start',
  workingHoursEnd: 'working_hours_end',
  updatedBy: 'updated_by',
};

function settingsFromRow(row: Record<string, any>): IntakeSettings {
  const out: Record<string, unknown> = { updatedAt: new Date(row.updated_at).toISOString() };
  for (const [key, column] of Object.entries(SETTINGS_COLUMNS)) out[key] = row[column];
  return out as unknown as IntakeSettings;
}

export async function readSettings(db: Queryable, lock = false): Promise<IntakeSettings> {
  const { rows } = await db.query(`SELECT * FROM intake_settings WHERE id${lock ? ' FOR SHARE' : ''}`);
  return settingsFromRow(rows[0]);
}

export async function updateSettings(db: Queryable, patch: Partial<Omit<IntakeSettings, 'updatedAt'>>): Promise<IntakeSettings> {
  const sets: string[] = [];
  const values: unknown[] = [];
  for (const [key, value] of Object.entries(patch)) {
    const column = SETTINGS_COLUMNS[key as keyof typeof SETTINGS_COLUMNS];
    if (!column || value === undefined) continue;
    values.push(value);
    sets.push(`${column} = $${values.length}`);
  }
  const { rows } = await db.query(`UPDATE intake_settings SET ${[...sets, 'updated_at = now()'].join(', ')} WHERE id RETURNING *`, values);
  return settingsFromRow(rows[0]);
}

// ---- suppressions --------------------------------------------------------------------

export interface Suppression {
  pattern: string;
  kind: 'address' | 'domain';
  reason: string | null;
  createdBy: string | null;
  createdAt: string;
}

const toSuppression = (r: any): Suppression => ({
  pattern: r.pattern,
  kind: r.kind,
  reason: r.reason,
  createdBy: r.created_by,
  createdAt: new Date(r.created_at).toISOString(),
});

export async function addSuppression(db: Queryable, s: { pattern: string; kind: 'address' | 'domain'; reason?: string; createdBy?: string }): Promise<{ suppression: Suppression; created: boolean }> {
  const { rows } = await db.query(
    `INSERT INTO suppressions (pattern, kind, reason, created_by) VALUES ($1, $2, $3, $4)
     ON CONFLICT (pattern) DO UPDATE SET reason = COALESCE(EXCLUDED.reason, suppressions.reason)
     RETURNING *, (xmax = 0) AS created`,
    [s.pattern, s.kind, s.reason ?? null, s.createdBy ?? null],
  );
  return { suppression: toSuppression(rows[0]), created: rows[0].created };
}

export async function removeSuppression(db: Queryable, pattern: string): Promise<boolean> {
  const { rowCount } = await db.query('DELETE FROM suppressions WHERE pattern = $1', [pattern]);
  return (rowCount ?? 0) > 0;
}

export async function listSuppressions(db: Queryable, options: { limit: number; after?: string }): Promise<Suppression[]> {
  const { rows } = await db.query('SELECT * FROM suppressions WHERE ($1::text IS NULL OR pattern > $1) ORDER BY pattern LIMIT $2', [options.after ?? null, options.limit]);
  return rows.map(toSuppression);
}

export async function matchingSuppression(db: Queryable, candidates: string[]): Promise<Suppression | undefined> {
  const { rows } = await db.query('SELECT * FROM suppressions WHERE pattern = ANY($1::text[]) ORDER BY kind LIMIT 1', [candidates]);
  return rows[0] ? toSuppression(rows[0]) : undefined;
}
