import type { Queryable } from './audit.js';

/**
 * Provider objects made for an intake, by business key (`intake_effects`, e.g.
 * `<intake key>:task`): a retried step finds what it made before asking the
 * provider again. The only module that writes the table.
 */

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

