import { createHash, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { backupDatabase, BackupError, restoreDatabase, verifyBackup } from '../../lib/ops/backup.js';
import { createPool } from '../../lib/store/db.js';
import { testDatabase, withDatabase } from '../helpers/stack.js';
import { insertSignals, manySignals, scratchDir, tableRows } from './helpers.js';

type Db = Awaited<ReturnType<typeof testDatabase>>;
let source: Db;
let target: Db;
let scratch: ReturnType<typeof scratchDir>;
let file: string;

// Tables the migrations do not know, discovered from the catalog: an identity column, a json
// column holding newlines, a generated column, and a foreign key into its own table.
const EXTRA_TABLES = `
  CREATE TABLE team_notes (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body json, shout text GENERATED ALWAYS AS (upper(body->>'t')) STORED);
  CREATE TABLE team_tree (id integer PRIMARY KEY, parent integer REFERENCES team_tree (id));`;

/** Every app table: whatever the migrations (ours and later ones) created, plus the extras. */
async function appTableNames(pool: pg.Pool): Promise<string[]> {
  const { rows } = await pool.query(`SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'pgmigrations' ORDER BY 1`);
  return rows.map((r) => r.tablename);
}

async function seed(pool: pg.Pool) {
  await insertSignals(pool, manySignals(1_200));
  await pool.query(`INSERT INTO source_cursors (source, query_name, cursor) VALUES ('x', 'buyers', '1899999'), ('rss', 'blog', NULL)`);
  for (let i = 0; i < 30; i++) {
    await pool.query(
      `INSERT INTO audit_events (event_key, workflow_id, actor, kind, action, outcome, details) VALUES ($1, $2, 'worker', 'intake', 'draft', 'ok', $3)`,
      [`k-${i}`, `intake-${i % 4}`, JSON.stringify({ step: i, note: 'é\n"q"' })],
    );
  }
  await pool.query(
    `INSERT INTO prospects (id, email, domain, name, stage, approval_state, draft_version, data) VALUES
     ('intake-a@acme.example', 'a@acme.example', 'acme.example', 'Ann', 'AWAITING_APPROVAL', 'PENDING', 2, '{"slots":["2025-03-10T09:00:00Z"]}'),
     ('intake-b@beta.example', 'b@beta.example', 'beta.example', NULL, 'SKIPPED', 'NONE', 0, '{}')`,
  );
  // A table the migrations do not know, with an identity column, a json column holding
  // newlines and a generated column: discovered from the catalog, not from a list.
  await pool.query(`INSERT INTO team_notes (body) VALUES ('{"t": "hi",\n "n": [1,\n 2]}'), ('null'), (NULL)`);
  // Each node's parent has a larger id, so rows in key order point forward: more than one
  // insert batch would break the foreign key.
  await pool.query(`INSERT INTO team_tree SELECT g, CASE WHEN g < 1500 THEN g + 1 END FROM generate_series(1, 1500) g`);
}

async function allRows(pool: pg.Pool) {
  const out: Record<string, string[]> = {};
  for (const t of await appTableNames(pool)) out[t] = await tableRows(pool, t, '1');
  return out;
}

/** Every user trigger and whether it fires ('O') or not ('D'). */
async function userTriggers(pool: pg.Pool) {
  const { rows } = await pool.query(
    `SELECT c.relname || '.' || t.tgname AS name, t.tgenabled AS state FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
      WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace ORDER BY 1`,
  );
  return rows;
}

beforeAll(async () => {
  [source, target] = await Promise.all([testDatabase(), testDatabase()]);
  await source.pool.query(EXTRA_TABLES);
  await target.pool.query(EXTRA_TABLES);
  await seed(source.pool);
  scratch = scratchDir();
  file = path.join(scratch.dir, 'backups', 'b.ndjson.gz');
});
afterAll(async () => {
  await Promise.all([source?.drop(), target?.drop()]);
  scratch?.remove();
});

describe('backupDatabase', () => {
  it('writes every app table (not the migrations ledger) with a manifest and checksums', async () => {
    const progress: number[] = [];
    const result = await backupDatabase({ pool: source.pool, file, onProgress: (p) => progress.push(p.done) });
    expect(result.tables.map((t) => t.name).sort()).toEqual(await appTableNames(source.pool));
    expect(result.tables.map((t) => t.name)).not.toContain('pgmigrations');
    expect(Object.fromEntries(result.tables.map((t) => [t.name, t.rows]))).toMatchObject({ signals: 1_200, audit_events: 30, prospects: 2, source_cursors: 2, team_notes: 3, team_tree: 1_500 });
    const rows = result.tables.reduce((n, t) => n + t.rows, 0);
    expect(progress.at(-1)).toBe(rows);

    const sidecar = readFileSync(`${file}.sha256`, 'utf8');
    expect(sidecar).toBe(`${createHash('sha256').update(readFileSync(file)).digest('hex')}  b.ndjson.gz\n`);

    const lines = gunzipSync(readFileSync(file)).toString('utf8').trimEnd().split('\n');
    const header = JSON.parse(lines[0]);
    expect(header).toMatchObject({ type: 'header', format: 'prospector.backup', version: 1 });
    const applied = (await source.pool.query('SELECT name FROM pgmigrations ORDER BY id')).rows.map((r) => r.name);
    expect(header.migrations).toEqual(applied);
    expect(applied.slice(0, 2)).toEqual(['0001_audit-and-prospects', '0002_signals']);
    expect(header.tables.find((t: { name: string }) => t.name === 'audit_events').sequences[0]).toMatchObject({ column: 'id', last_value: 30 });
    expect(JSON.parse(lines.at(-1)!).type).toBe('trailer');
    expect(lines).toHaveLength(1 + rows + 1);
    for (const line of lines) JSON.parse(line); // every line is JSON on its own

    const inspection = await verifyBackup(file);
    expect(inspection.tables.find((t) => t.name === 'signals')?.rows).toBe(1_200);
  });
});

describe('restoreDatabase', () => {
  it('round trip into a fresh database: every table equal row for row, audit trigger back on, sequences ahead', async () => {
    const triggersBefore = await userTriggers(target.pool);
    expect(triggersBefore).toEqual(expect.arrayContaining([{ name: 'audit_events.audit_events_no_update', state: 'O' }]));
    const result = await restoreDatabase({ pool: target.pool, file });
    expect(result.triggers).toEqual(expect.arrayContaining(['audit_events.audit_events_no_truncate', 'audit_events.audit_events_no_update']));
    expect(await allRows(target.pool)).toEqual(await allRows(source.pool));

    expect(await userTriggers(target.pool)).toEqual(triggersBefore);
    await expect(target.pool.query(`UPDATE audit_events SET outcome = 'tampered'`)).rejects.toThrow(/append-only/);

    const next = await target.pool.query(`INSERT INTO audit_events (actor, kind, action, outcome) VALUES ('t', 't', 't', 't') RETURNING id`);
    expect(Number(next.rows[0].id)).toBe(31);
    const note = await target.pool.query(`INSERT INTO team_notes (body) VALUES ('{}') RETURNING id`);
    expect(note.rows[0].id).toBe(4);
  });

  it('into an existing database: truncates and loads, leaving tables the backup does not know alone', async () => {
    await target.pool.query(`CREATE TABLE IF NOT EXISTS local_only (v int)`);
    await target.pool.query(`INSERT INTO local_only VALUES (1)`);
    await target.pool.query(`DELETE FROM signals WHERE likes < 600`);
    await target.pool.query(`INSERT INTO source_cursors (source, query_name, cursor) VALUES ('x', 'new', '5')`);
    const result = await restoreDatabase({ pool: target.pool, file });
    expect(result.untouched).toEqual(['local_only']);
    expect(result.tables.find((t) => t.name === 'source_cursors')).toEqual({ name: 'source_cursors', rows: 2, replaced: 3 });
    const { local_only, ...restored } = await allRows(target.pool);
    expect(local_only).toEqual(['{"v":1}']);
    expect(restored).toEqual(await allRows(source.pool));
    await target.pool.query('DROP TABLE local_only');
  });

  it('refuses a tampered archive before touching anything', async () => {
    const tampered = path.join(scratch.dir, 'tampered.ndjson.gz');
    const text = gunzipSync(readFileSync(file)).toString('utf8');
    writeFileSync(tampered, gzipSync(text.replace('"outcome":"ok"', '"outcome":"OK"')));
    await target.pool.query(`DELETE FROM signals WHERE likes < 10`);
    const before = await allRows(target.pool);
    const err = await restoreDatabase({ pool: target.pool, file: tampered }).catch((e) => e);
    expect(err).toBeInstanceOf(BackupError);
    expect(err.code).toBe('corrupt');
    expect(err.message).toMatch(/is corrupt: .*table audit_events: checksum mismatch/);
    expect(await allRows(target.pool)).toEqual(before);
  });

  it('refuses a cut-short archive and one that is not a backup', async () => {
    const cut = path.join(scratch.dir, 'cut.ndjson.gz');
    const lines = gunzipSync(readFileSync(file)).toString('utf8').split('\n');
    writeFileSync(cut, gzipSync(lines.slice(0, 500).join('\n')));
    await expect(verifyBackup(cut)).rejects.toThrow(/is corrupt: the trailer is missing/);

    const garbage = path.join(scratch.dir, 'garbage.gz');
    writeFileSync(garbage, Buffer.from('this is not gzip'));
    await expect(verifyBackup(garbage)).rejects.toThrow(/is corrupt: cannot read it/);
    await expect(verifyBackup(path.join(scratch.dir, 'missing.gz'))).rejects.toThrow(/backup file not found/);
  });

  it('a restore that fails part-way changes nothing and leaves the audit trigger on', async () => {
    await target.pool.query(`ALTER TABLE prospects ADD CONSTRAINT no_ann CHECK (name IS DISTINCT FROM 'Ann') NOT VALID`);
    await target.pool.query(`DELETE FROM signals WHERE likes < 20`);
    const before = await allRows(target.pool);
    const triggersBefore = await userTriggers(target.pool);
    try {
      await expect(restoreDatabase({ pool: target.pool, file })).rejects.toThrow(/no_ann/);
      expect(await allRows(target.pool)).toEqual(before);
      expect(await userTriggers(target.pool)).toEqual(triggersBefore);
    } finally {
      await target.pool.query('ALTER TABLE prospects DROP CONSTRAINT no_ann');
    }
  });

  it('into a database without the schema: says to migrate first', async () => {
    const base = inject('databaseUrl');
    const name = `t_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
    const admin = new pg.Client({ connectionString: base });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    const pool = createPool(withDatabase(base, name), 1);
    try {
      const err = await restoreDatabase({ pool, file }).catch((e) => e);
      expect(err).toBeInstanceOf(BackupError);
      expect(err.code).toBe('incompatible');
      expect(err.message).toMatch(/no schema yet: run `prospector db migrate` first/);
    } finally {
      await pool.end();
      await admin.query(`DROP DATABASE ${name} WITH (FORCE)`);
      await admin.end();
    }
  });
});
