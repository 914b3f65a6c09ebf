import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createSnapshot,
  diffSnapshots,
  listSnapshots,
  resolveSnapshot,
  restoreSnapshot,
  SnapshotError,
  verifySnapshot,
} from '../../lib/ops/snapshots.js';
import { testDatabase } from '../helpers/stack.js';
import { insertSignals, manySignals, scratchDir, tableRows } from './helpers.js';

let db: Awaited<ReturnType<typeof testDatabase>>;
let scratch: ReturnType<typeof scratchDir>;
let dir: string;
let seq = 0;

/** Snapshots one minute apart on a fixed clock, so their order never depends on timing. */
const at = () => new Date(Date.UTC(2025, 2, 7, 12, seq++, 0));

beforeAll(async () => {
  db = await testDatabase();
});
afterAll(async () => {
  await db?.drop();
});
beforeEach(async () => {
  scratch?.remove();
  scratch = scratchDir();
  dir = path.join(scratch.dir, 'snapshots');
  await db.pool.query('DELETE FROM signals');
});
afterAll(() => scratch?.remove());

const gunzipText = (file: string) => gunzipSync(readFileSync(file)).toString('utf8');
const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

describe('createSnapshot', () => {
  it('writes gzip ndjson and csv with a manifest whose checksums, columns and count match', async () => {
    await insertSignals(db.pool, [
      { external_id: 'b' },
      { external_id: 'a', text: '=HYPERLINK("http://evil")' },
      { source: 'rss', external_id: 'z', score: null, tags: [] },
    ]);
    const first = await createSnapshot({ pool: db.pool, dir, now: at() });
    const m = first.manifest!;
    expect(m.row_count).toBe(3);
    expect(m.previous_id).toBeNull();
    const dbColumns = (await db.pool.query(`SELECT column_name FROM information_schema.columns WHERE table_name = 'signals' ORDER BY ordinal_position`)).rows.map((r) => r.column_name);
    expect(m.columns.map((c) => c.name)).toEqual(dbColumns);
    expect(m.columns.find((c) => c.name === 'score')?.type).toBe('numeric(6,2)');
    for (const f of m.files) expect(sha256(path.join(first.path, f.name))).toBe(f.sha256);

    const lines = gunzipText(path.join(first.path, 'signals.ndjson.gz')).trimEnd().split('\n');
    expect(lines.map((l) => [JSON.parse(l).source, JSON.parse(l).external_id])).toEqual([
      ['rss', 'z'],
      ['x', 'a'],
      ['x', 'b'],
    ]);
    const row = JSON.parse(lines[2]);
    expect(row.text).toBe('line one, "quoted"\nline two for b');
    expect(row.raw).toEqual({ big: 12345678901234, nested: { list: [1, 2.5, 'x'], empty: null } });

    const csv = gunzipText(path.join(first.path, 'signals.csv.gz'));
    expect(csv.split('\n')[0]).toBe(dbColumns.join(','));
    expect(csv).toContain(`"'=HYPERLINK(""http://evil"")"`); // formula neutralised, quotes doubled
    expect(csv).toContain('"line one, ""quoted""\nline two for b"');
    expect(csv).toContain('"[""q1"",""q,2""]"');

    const second = await createSnapshot({ pool: db.pool, dir, now: at() });
    expect(second.manifest!.previous_id).toBe(first.id);
    expect((await listSnapshots(dir)).map((s) => s.id)).toEqual([first.id, second.id]);
  });

  it('carries columns added by later migrations along', async () => {
    await db.pool.query(`ALTER TABLE signals ADD COLUMN later_note text NOT NULL DEFAULT 'n/a'`);
    try {
      await insertSignals(db.pool, [{ external_id: 'a' }, { external_id: 'b' }]);
      await db.pool.query(`UPDATE signals SET later_note = 'kept: ' || external_id`);
      const original = await tableRows(db.pool, 'signals');
      const snap = await createSnapshot({ pool: db.pool, dir, now: at() });
      expect(snap.manifest!.columns.map((c) => c.name)).toContain('later_note');
      await db.pool.query('DELETE FROM signals');
      await restoreSnapshot({ pool: db.pool, dir, id: snap.id });
      expect(await tableRows(db.pool, 'signals')).toEqual(original);
    } finally {
      await db.pool.query('DELETE FROM signals');
      await db.pool.query('ALTER TABLE signals DROP COLUMN later_note');
    }
  });
});

describe('resolveSnapshot', () => {
  it('finds by id, unique prefix and latest; names the problem for an unknown id', async () => {
    await insertSignals(db.pool, [{ external_id: 'a' }]);
    const a = await createSnapshot({ pool: db.pool, dir, now: at() });
    const b = await createSnapshot({ pool: db.pool, dir, now: at() });
    expect((await resolveSnapshot(dir, 'latest')).id).toBe(b.id);
    expect((await resolveSnapshot(dir, a.id)).id).toBe(a.id);
    expect((await resolveSnapshot(dir, b.id.slice(0, 13))).id).toBe(b.id);
    const err = await resolveSnapshot(dir, 'nope').catch((e) => e);
    expect(err).toBeInstanceOf(SnapshotError);
    expect(err.code).toBe('not_found');
    expect(err.message).toContain('unknown snapshot "nope"');
  });
});

describe('verifySnapshot and a corrupt snapshot', () => {
  it('detects a tampered file, and restore refuses it without touching the table', async () => {
    await insertSignals(db.pool, manySignals(5));
    const snap = await createSnapshot({ pool: db.pool, dir, now: at() });
    expect((await verifySnapshot(dir, snap.id)).ok).toBe(true);

    // A well-formed gzip whose content was edited: only the checksum can tell.
    const file = path.join(snap.path, 'signals.ndjson.gz');
    writeFileSync(file, gzipSync(gunzipText(file).replace('"likes":3', '"likes":999')));
    const check = await verifySnapshot(dir, snap.id);
    expect(check.ok).toBe(false);
    expect(check.problems.join()).toMatch(/signals\.ndjson\.gz does not match its checksum/);
    expect(check.files.find((f) => f.name === 'signals.csv.gz')?.ok).toBe(true);

    await db.pool.query(`UPDATE signals SET likes = 7`);
    const before = await tableRows(db.pool, 'signals');
    const err = await restoreSnapshot({ pool: db.pool, dir, id: snap.id }).catch((e) => e);
    expect(err).toBeInstanceOf(SnapshotError);
    expect(err.code).toBe('corrupt');
    expect(err.message).toMatch(/snapshot .* is corrupt: signals\.ndjson\.gz does not match its checksum/);
    expect(await tableRows(db.pool, 'signals')).toEqual(before);
  });

  it('reports a missing file', async () => {
    await insertSignals(db.pool, manySignals(1));
    const snap = await createSnapshot({ pool: db.pool, dir, now: at() });
    rmSync(path.join(snap.path, 'signals.csv.gz'));
    const check = await verifySnapshot(dir, snap.id);
    expect(check.ok).toBe(false);
    expect(check.problems).toEqual(['signals.csv.gz is missing']);
  });
});

describe('diffSnapshots', () => {
  it('reports added, removed and changed rows by (source, external_id), naming the changed fields', async () => {
    await insertSignals(db.pool, [{ external_id: 'keep' }, { external_id: 'gone' }, { external_id: 'edit', likes: 3 }]);
    const a = await createSnapshot({ pool: db.pool, dir, now: at() });
    await db.pool.query(`DELETE FROM signals WHERE external_id = 'gone'`);
    await db.pool.query(`UPDATE signals SET likes = 10, tags = '{a,new}' WHERE external_id = 'edit'`);
    await insertSignals(db.pool, [{ source: 'rss', external_id: 'fresh' }]);
    const b = await createSnapshot({ pool: db.pool, dir, now: at() });

    const diff = await diffSnapshots(dir); // latest against its previous
    expect(diff.from).toBe(a.id);
    expect(diff.to).toBe(b.id);
    expect(diff.counts).toEqual({ added: 1, removed: 1, changed: 1, unchanged: 1 });
    expect(diff.added).toEqual([{ source: 'rss', external_id: 'fresh' }]);
    expect(diff.removed).toEqual([{ source: 'x', external_id: 'gone' }]);
    expect(diff.changed).toEqual([
      {
        key: { source: 'x', external_id: 'edit' },
        fields: ['likes', 'tags'],
        values: { likes: { from: 3, to: 10 }, tags: { from: ['a', 'b c'], to: ['a', 'new'] } },
      },
    ]);

    const reverse = await diffSnapshots(dir, { from: b.id, to: a.id });
    expect(reverse.counts).toMatchObject({ added: 1, removed: 1, changed: 1 });
    expect(reverse.added).toEqual([{ source: 'x', external_id: 'gone' }]);
  });

  it('cuts the lists at the limit but keeps exact counts', async () => {
    await insertSignals(db.pool, manySignals(1));
    await createSnapshot({ pool: db.pool, dir, now: at() });
    await insertSignals(db.pool, manySignals(5, 'new'));
    await createSnapshot({ pool: db.pool, dir, now: at() });
    const diff = await diffSnapshots(dir, { limit: 2 });
    expect(diff.counts.added).toBe(5);
    expect(diff.added).toHaveLength(2);
    expect(diff.truncated).toBe(true);
  });

  it('says when there is nothing to compare with', async () => {
    await createSnapshot({ pool: db.pool, dir, now: at() });
    await expect(diffSnapshots(dir)).rejects.toThrow(/has no previous snapshot/);
  });
});

describe('restoreSnapshot', () => {
  it('replace: the table ends up equal to the snapshot, row for row, across many batches', async () => {
    await insertSignals(db.pool, manySignals(2_500));
    const original = await tableRows(db.pool, 'signals');
    const snap = await createSnapshot({ pool: db.pool, dir, now: at() });
    expect(snap.row_count).toBe(2_500);

    await db.pool.query(`DELETE FROM signals WHERE external_id < 'id-001000'`);
    await db.pool.query(`UPDATE signals SET likes = likes + 1000, category = 'other'`);
    await insertSignals(db.pool, [{ external_id: 'only-now' }]);

    const result = await restoreSnapshot({ pool: db.pool, dir, id: snap.id, mode: 'replace' });
    expect(result).toMatchObject({ mode: 'replace', rows: 2_500, replaced: 1_501, inserted: 2_500 });
    expect(await tableRows(db.pool, 'signals')).toEqual(original);

    // The id sequence never moves back: a new row cannot collide with a restored one.
    const maxId = Number((await db.pool.query('SELECT max(id) AS m FROM signals')).rows[0].m);
    await insertSignals(db.pool, [{ external_id: 'after-restore' }]);
    const newId = Number((await db.pool.query(`SELECT id FROM signals WHERE external_id = 'after-restore'`)).rows[0].id);
    expect(newId).toBeGreaterThan(maxId);
  });

  it('merge: snapshot rows come back by key, rows only in the table stay', async () => {
    await insertSignals(db.pool, [{ external_id: 'a', likes: 1 }, { external_id: 'b', likes: 2 }]);
    const snapRows = await tableRows(db.pool, 'signals');
    const snap = await createSnapshot({ pool: db.pool, dir, now: at() });

    await db.pool.query(`DELETE FROM signals WHERE external_id = 'a'`);
    await db.pool.query(`UPDATE signals SET likes = 50 WHERE external_id = 'b'`);
    await insertSignals(db.pool, [{ external_id: 'c', likes: 3 }]);
    const cRow = (await tableRows(db.pool, 'signals')).find((r) => JSON.parse(r).external_id === 'c');

    const result = await restoreSnapshot({ pool: db.pool, dir, id: snap.id, mode: 'merge' });
    expect(result).toMatchObject({ mode: 'merge', rows: 2, inserted: 1, updated: 1 });
    expect(await tableRows(db.pool, 'signals')).toEqual([...snapRows, cRow]);
  });

  it('rolls back completely when the load fails part-way', async () => {
    await insertSignals(db.pool, [{ external_id: 'a' }, { external_id: 'b' }]);
    const snap = await createSnapshot({ pool: db.pool, dir, now: at() });
    const before = await tableRows(db.pool, 'signals');
    // Make the snapshot's rows unacceptable to the table (a constraint the snapshot predates).
    await db.pool.query(`ALTER TABLE signals ADD CONSTRAINT no_b CHECK (external_id <> 'b') NOT VALID`);
    try {
      await db.pool.query(`DELETE FROM signals WHERE external_id = 'b'`);
      const now = await tableRows(db.pool, 'signals');
      await expect(restoreSnapshot({ pool: db.pool, dir, id: snap.id })).rejects.toThrow(/no_b/);
      expect(await tableRows(db.pool, 'signals')).toEqual(now);
      expect(now).toEqual(before.slice(0, 1));
    } finally {
      await db.pool.query('ALTER TABLE signals DROP CONSTRAINT no_b');
    }
  });
});
