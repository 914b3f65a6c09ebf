import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Pool } from '../../lib/store/db.js';

/** A scratch directory removed by the returned function. */
export function scratchDir(prefix = 'prospector-data-'): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface SignalSeed {
  source?: string;
  external_id: string;
  text?: string;
  likes?: number;
  score?: string | null;
  tags?: string[];
  raw?: unknown;
}

/**
 * Signals with the awkward values a round trip must survive: unicode and
 * newlines in text, formula-like text, arrays, nested jsonb, numerics,
 * microsecond timestamps and nulls.
 */
export async function insertSignals(pool: Pool, seeds: SignalSeed[]): Promise<void> {
  for (const s of seeds) {
    await pool.query(
      `INSERT INTO signals (source, external_id, url, author_handle, text, lang, posted_at, query_names, likes, reposts, category, sentiment, urgency, tags, score, raw)
       VALUES ($1, $2, $3, $4, $5, 'en', '2025-03-07T14:15:16.123456Z', $6, $7, 2, 'buying_intent', 'positive', 3, $8, $9, $10)`,
      [
        s.source ?? 'x',
        s.external_id,
        `https://x.example/status/${s.external_id}`,
        'ünïcødé_😀',
        s.text ?? `line one, "quoted"\nline two for ${s.external_id}`,
        ['q1', 'q,2'],
        s.likes ?? 1,
        s.tags ?? ['a', 'b c'],
        s.score === undefined ? '42.50' : s.score,
        JSON.stringify(s.raw ?? { nested: { list: [1, 2.5, 'x'], empty: null }, big: 12345678901234 }),
      ],
    );
  }
}

export function manySignals(n: number, prefix = 'id'): SignalSeed[] {
  return Array.from({ length: n }, (_, i) => ({ external_id: `${prefix}-${String(i).padStart(6, '0')}`, likes: i }));
}

/** Every row of a table as PostgreSQL's JSON, in a stable order: equality here is row-for-row equality. */
export async function tableRows(pool: Pool, table: string, orderBy = 'id'): Promise<string[]> {
  const { rows } = await pool.query(`SELECT row_to_json(r.*)::text AS j FROM ${table} AS r ORDER BY ${orderBy}`);
  return rows.map((r) => r.j as string);
}
