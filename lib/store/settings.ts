import type { Queryable } from './audit.js';

/**
 * The screening policy operators control (`intake_settings`, one row) and the
 * suppression list (`suppressions`): the only module that writes them.
 */

export interface IntakeSettings {
  paused: boolean;
  pausedReason: string | null;
  recontactWindowDays: number;
  domainDailyCap: number;
  senderDailyCap: number;
  senderCompany: string;
  /** What the sender sells, in the operator's words (at most 1000 characters); evidence for the writer. */
  senderPitch: string | null;
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
  senderPitch: 'sender_pitch',
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
