import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { planPrune } from '../../lib/ops/retention.js';
import { applyRetention, createSnapshot, listSnapshots } from '../../lib/ops/snapshots.js';
import { runCli as cli } from '../helpers/cli.js';
import { testDatabase } from '../helpers/stack.js';
import { insertSignals, manySignals, scratchDir, tableRows } from './helpers.js';

let db: Awaited<ReturnType<typeof testDatabase>>;
let scratch: ReturnType<typeof scratchDir>;
let dir: string;
const saved = { DATABASE_URL: process.env.DATABASE_URL, DATA_DIR: process.env.DATA_DIR, SNAPSHOT_DIR: process.env.SNAPSHOT_DIR };

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const onDisk = () => readdirSync(dir).filter((n) => !n.startsWith('.')).sort();

/** Snapshots whose ages (before the real clock, as the CLI uses it) are given, oldest first. */
async function snapshotsAged(...ages: number[]): Promise<string[]> {
  const ids = [];
  for (const age of ages) ids.push((await createSnapshot({ pool: db.pool, dir, now: new Date(Date.now() - age) })).id);
  return ids;
}

beforeAll(async () => {
  db = await testDatabase();
  await insertSignals(db.pool, manySignals(20));
  process.env.DATABASE_URL = db.url;
  delete process.env.SNAPSHOT_DIR;
});
beforeEach(() => {
  scratch?.remove();
  scratch = scratchDir();
  process.env.DATA_DIR = scratch.dir;
  dir = path.join(scratch.dir, 'snapshots');
});
afterAll(async () => {
  Object.assign(process.env, saved);
  for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k];
  scratch?.remove();
  await db?.drop();
});

describe('snapshot commands', () => {
  it('create, list, show, diff: JSON and tables', async () => {
    const created = await cli('snapshot', 'create', '--json');
    expect(created.code).toBe(0);
    const snap = JSON.parse(created.out);
    expect(snap).toMatchObject({ rows: 20, files: 3, previous_id: null, problem: null });
    expect(snap.path).toBe(path.join(dir, snap.id));

    await db.pool.query(`UPDATE signals SET likes = 99 WHERE external_id = 'id-000003'`);
    const second = await cli('snapshot', 'create');
    expect(second.code).toBe(0);
    expect(second.out).toMatch(/^Created snapshot \S+: 20 rows/);

    const list = await cli('snapshot', 'list');
    expect(list.out.split('\n')[0]).toMatch(/^ID\s+CREATED \(UTC\)\s+ROWS\s+SIZE\s+FILES\s+STATUS$/);
    expect(list.out).toContain(snap.id);
    expect(JSON.parse((await cli('snapshot', 'list', '--json')).out)).toHaveLength(2);

    const show = await cli('snapshot', 'show', 'latest');
    expect(show.code).toBe(0);
    expect(show.out).toMatch(/status\s+ok/);
    expect(show.out).toMatch(/signals\.ndjson\.gz .* ok/);

    const diff = await cli('snapshot', 'diff');
    expect(diff.code).toBe(0);
    expect(diff.out).toContain('0 added, 0 removed, 1 changed, 19 unchanged');
    expect(diff.out).toContain('~ x/id-000003: likes 3 → 99');
    await db.pool.query(`UPDATE signals SET likes = 3 WHERE external_id = 'id-000003'`);
  });

  it('restore is a dry run without --force, then restores', async () => {
    const original = await tableRows(db.pool, 'signals');
    const [id] = await snapshotsAged(HOUR);
    await db.pool.query(`DELETE FROM signals WHERE likes > 10`);

    const dry = await cli('snapshot', 'restore', id);
    expect(dry.code).toBe(0);
    expect(dry.out).toContain('20 rows; the signals table has 11 rows now');
    expect(dry.err).toContain('Dry run: nothing changed');
    expect(await tableRows(db.pool, 'signals')).toHaveLength(11);

    const real = await cli('snapshot', 'restore', id.slice(0, 12), '--force', '--json');
    expect(real.code).toBe(0);
    expect(JSON.parse(real.out)).toMatchObject({ dry_run: false, id, mode: 'replace', inserted: 20, replaced: 11 });
    expect(await tableRows(db.pool, 'signals')).toEqual(original);
  });

  it('a tampered snapshot: verify exits 5 naming the file, restore refuses', async () => {
    const [id] = await snapshotsAged(HOUR);
    const file = path.join(dir, id, 'signals.ndjson.gz');
    writeFileSync(file, gzipSync(gunzipSync(readFileSync(file)).toString().replace('"likes":4', '"likes":5')));

    const verify = await cli('snapshot', 'verify');
    expect(verify.code).toBe(5);
    expect(verify.out).toContain(`CORRUPT  ${id}  signals.ndjson.gz does not match its checksum`);
    expect(verify.err).toContain('1 of 1 snapshot(s) failed verification');

    const before = await tableRows(db.pool, 'signals');
    const restore = await cli('snapshot', 'restore', id, '--force');
    expect(restore.code).toBe(5);
    expect(restore.err).toMatch(/error: snapshot \S+ is corrupt, refusing to restore it: signals\.ndjson\.gz does not match its checksum/);
    expect(await tableRows(db.pool, 'signals')).toEqual(before);
  });

  it('bad input names the problem', async () => {
    const unknown = await cli('snapshot', 'show', 'no-such-id');
    expect(unknown.code).toBe(4);
    expect(unknown.err).toContain('error: unknown snapshot "no-such-id"');

    await snapshotsAged(HOUR);
    const mode = await cli('snapshot', 'restore', 'latest', '--mode', 'sideways');
    expect(mode.code).toBe(2);
    expect(mode.err).toContain('--mode must be replace or merge, got "sideways"');

    const limit = await cli('snapshot', 'diff', '--limit', 'lots');
    expect(limit.code).toBe(2);
    expect(limit.err).toContain('--limit must be a whole number');
  });
});

describe('retention commands', () => {
  it('prune: dry run deletes nothing; --force deletes exactly the planned snapshots', async () => {
    const ids = await snapshotsAged(4 * HOUR, 3 * HOUR, 2 * HOUR, HOUR);
    const dry = await cli('prune', '--keep', '2');
    expect(dry.code).toBe(0);
    expect(dry.out).toContain('Dry run: nothing deleted. Run again with --force to delete 2 snapshot(s)');
    expect(dry.out).toMatch(new RegExp(`delete\\s+${ids[0]}`));
    expect(dry.out).toMatch(new RegExp(`keep\\s+${ids[3]}\\s.*newest 2`));
    expect(onDisk()).toEqual(ids);

    const forced = await cli('prune', '--keep', '2', '--force', '--json');
    expect(forced.code).toBe(0);
    const result = JSON.parse(forced.out);
    expect(result.deleted.sort()).toEqual([ids[0], ids[1]]);
    expect(result.delete.map((s: { id: string }) => s.id).sort()).toEqual(result.deleted.sort());
    expect(onDisk()).toEqual([ids[2], ids[3]]);
  });

  it('quota blocked by keep_min: says so and exits 3, in dry run and when forced', async () => {
    const ids = await snapshotsAged(3 * HOUR, 2 * HOUR, HOUR);
    const dry = await cli('quota', '--max-bytes', '1', '--keep-min', '2');
    expect(dry.code).toBe(3);
    expect(dry.out).toContain('BLOCKED: quota cannot be met without going below keep_min=2');
    expect(dry.err).toMatch(/error: quota blocked: .*2 snapshot\(s\) remain with \d+ bytes > max 1/);
    expect(onDisk()).toEqual(ids);

    const forced = await cli('quota', '--max-bytes', '1', '--keep-min', '2', '--force', '--json');
    expect(forced.code).toBe(3);
    const plan = JSON.parse(forced.out);
    expect(plan.blocked.reason).toMatch(/keep_min=2/);
    expect(plan.deleted).toEqual([ids[0]]);
    expect(onDisk()).toEqual([ids[1], ids[2]]);
  });

  it('quota by files within reach: exits 0', async () => {
    const ids = await snapshotsAged(3 * HOUR, 2 * HOUR, HOUR);
    const res = await cli('quota', '--max-files', '6', '--keep-min', '1', '--force');
    expect(res.code).toBe(0);
    expect(res.out).toContain('Deleted 1 snapshot(s)');
    expect(onDisk()).toEqual([ids[1], ids[2]]);
  });

  it('retain --force deletes what is outside the window and the buckets', async () => {
    const ids = await snapshotsAged(40 * DAY, 30 * DAY, 10 * DAY, 2 * HOUR, HOUR);
    const res = await cli('retain', '--keep-age', '7d', '--monthly', '1', '--keep-min', '0', '--force', '--json');
    expect(res.code).toBe(0);
    const plan = JSON.parse(res.out);
    // Kept: the two inside 7 days; the newest of them is also the newest of its month.
    expect(plan.keep.map((s: { id: string }) => s.id)).toEqual([ids[4], ids[3]]);
    expect(plan.deleted.sort()).toEqual([ids[0], ids[1], ids[2]]);
    expect(onDisk()).toEqual([ids[3], ids[4]]);
  });

  it('bad input: negative, non-numeric and missing settings exit 2 naming the flag', async () => {
    const cases: [string[], string][] = [
      [['prune', '--keep', '-1'], '--keep must be a whole number of 0 or more, got "-1"'],
      [['prune', '--keep', 'ten'], '--keep must be a whole number of 0 or more, got "ten"'],
      [['quota', '--max-bytes', '5 parsecs'], '--max-bytes: invalid size "5 parsecs"'],
      [['quota', '--keep-min', '1'], 'quota needs --max-bytes and/or --max-files'],
      [['quota', '--max-files', '3', '--keep-min', '-2'], '--keep-min must be a whole number'],
      [['retain', '--daily', '3.5'], '--daily must be a whole number'],
      [['retain', '--keep-age', 'a week'], '--keep-age: invalid duration "a week"'],
      [['retain', '--keep-min', '2'], 'retain needs a keep-age window and/or at least one of hourly'],
    ];
    for (const [args, message] of cases) {
      const res = await cli(...args);
      expect({ args, code: res.code }).toEqual({ args, code: 2 });
      expect(res.err).toContain(message);
    }
    const missing = await cli('prune');
    expect(missing.code).not.toBe(0);
    expect(missing.err).toContain("required option '--keep <n>' not specified");
  });

  it('the executor alone: dry run deletes nothing, force deletes exactly the plan', async () => {
    const ids = await snapshotsAged(3 * HOUR, 2 * HOUR, HOUR);
    const plan = planPrune(await listSnapshots(dir), { keep: 1 });
    expect(await applyRetention(dir, plan, { force: false })).toEqual({ dry_run: true, deleted: [], freed_bytes: 0 });
    expect(onDisk()).toEqual(ids);
    const done = await applyRetention(dir, plan, { force: true });
    expect(done.deleted).toEqual([ids[1], ids[0]]);
    expect(done.freed_bytes).toBe(plan.delete.reduce((n, s) => n + s.bytes, 0));
    expect(onDisk()).toEqual([ids[2]]);
    await expect(applyRetention(dir, { ...plan, delete: [{ ...plan.delete[0], id: '../etc' }] }, { force: true })).rejects.toThrow(/not a snapshot id/);
  });
});

describe('db commands', () => {
  it('migrate, backup, restore (dry run, then forced) and a corrupt archive', async () => {
    const migrate = await cli('db', 'migrate');
    expect(migrate.code).toBe(0);
    expect(migrate.out).toContain('Database is up to date');

    await db.pool.query(`INSERT INTO audit_events (actor, kind, action, outcome) VALUES ('cli-test', 'data', 'backup', 'ok')`);
    const signals = await tableRows(db.pool, 'signals');
    const audit = await tableRows(db.pool, 'audit_events');

    const file = path.join(scratch.dir, 'b.ndjson.gz');
    const backup = await cli('db', 'backup', '--out', file, '--json');
    expect(backup.code).toBe(0);
    expect(JSON.parse(backup.out).tables).toEqual(expect.arrayContaining([{ name: 'signals', rows: 20 }]));
    expect(existsSync(`${file}.sha256`)).toBe(true);

    const defaultOut = await cli('db', 'backup');
    expect(defaultOut.code).toBe(0);
    expect(defaultOut.out).toMatch(new RegExp(`to ${path.join(scratch.dir, 'backups')}/prospector-\\d{8}T\\d{9}Z\\.ndjson\\.gz`));

    await db.pool.query(`DELETE FROM signals WHERE likes < 5`);
    const dry = await cli('db', 'restore', file);
    expect(dry.code).toBe(0);
    expect(dry.out).toMatch(/signals\s+20\s+15/);
    expect(dry.err).toContain('Dry run: nothing changed');
    expect(await tableRows(db.pool, 'signals')).toHaveLength(15);

    const real = await cli('db', 'restore', file, '--force');
    expect(real.code).toBe(0);
    expect(real.out).toMatch(/^Restored \d+ tables/);
    expect(await tableRows(db.pool, 'signals')).toEqual(signals);
    expect(await tableRows(db.pool, 'audit_events')).toEqual(audit);

    const bad = path.join(scratch.dir, 'bad.ndjson.gz');
    writeFileSync(bad, gzipSync(gunzipSync(readFileSync(file)).toString().replace('"actor":"cli-test"', '"actor":"someone"')));
    const corrupt = await cli('db', 'restore', bad, '--force');
    expect(corrupt.code).toBe(5);
    expect(corrupt.err).toMatch(/error: backup .*bad\.ndjson\.gz is corrupt: .*table audit_events: checksum mismatch/);

    const missing = await cli('db', 'restore', path.join(scratch.dir, 'nope.gz'));
    expect(missing.code).toBe(4);
    expect(missing.err).toContain('backup file not found');
  });
});
