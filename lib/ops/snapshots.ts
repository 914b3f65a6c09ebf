import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import type { Pool } from '../store/db.js';
import { GzipLineWriter, readGzipLines, RowBatcher, sha256File, type OnProgress } from './backup.js';
import { beginConsistentRead, insertJsonRows, quoteIdent, settleSession, streamRowJson, tableColumns, type ColumnInfo } from '../store/tables.js';
import { advanceSignalSequences, mergeSignals, replaceSignals, SIGNAL_KEY } from '../store/signals.js';
import type { RetentionPlan, SnapshotRef } from './retention.js';

/**
 * Snapshots of the signal store: the `signals` table written as gzip'd ndjson
 * (the restorable copy) and gzip'd csv (for spreadsheets), with a manifest
 * holding the row count, the columns, each file's sha256, the creation time and
 * the previous snapshot's id.
 *
 *   <dir>/<id>/manifest.json
 *   <dir>/<id>/signals.ndjson.gz
 *   <dir>/<id>/signals.csv.gz
 *
 * Columns are read from the catalog, so columns added by later migrations are
 * carried along without changes here. Rows are sorted by (source, external_id)
 * in byte order, which lets a diff walk two snapshots side by side in constant memory.
 */

export const SNAPSHOT_TABLE = 'signals';
export const SNAPSHOT_KEY = SIGNAL_KEY;
export const SNAPSHOT_FORMAT = 'prospector.signals-snapshot';
const NDJSON_FILE = `${SNAPSHOT_TABLE}.ndjson.gz`;
const CSV_FILE = `${SNAPSHOT_TABLE}.csv.gz`;
const MANIFEST_FILE = 'manifest.json';
/** 20250307T141500123Z, with -2, -3 ... when two are taken in the same millisecond. */
const ID_PATTERN = /^\d{8}T\d{9}Z(-\d+)?$/;

export class SnapshotError extends Error {
  constructor(
    message: string,
    readonly code: 'not_found' | 'corrupt' | 'invalid',
    readonly problems: string[] = [],
  ) {
    super(message);
    this.name = 'SnapshotError';
  }
}

export interface SnapshotManifest {
  format: typeof SNAPSHOT_FORMAT;
  version: 1;
  id: string;
  created_at: string;
  previous_id: string | null;
  table: string;
  key: string[];
  row_count: number;
  columns: { name: string; type: string }[];
  files: { name: string; format: 'ndjson+gzip' | 'csv+gzip'; bytes: number; sha256: string }[];
  server_version: string;
}

export interface SnapshotInfo extends SnapshotRef {
  id: string;
  path: string;
  created_at: string;
  bytes: number;
  files: number;
  row_count: number | null;
  previous_id: string | null;
  manifest?: SnapshotManifest;
  /** Why the snapshot cannot be read (missing or unreadable manifest). */
  problem?: string;
}

export function defaultSnapshotDir(dataDir: string): string {
  return path.join(dataDir, 'snapshots');
}

// ---------------------------------------------------------------------------
// create

export interface CreateSnapshotOptions {
  pool: Pool;
  dir: string;
  /** The creation time recorded (and the id); tests pass a fixed clock. */
  now?: Date;
  onProgress?: OnProgress;
}

export async function createSnapshot(options: CreateSnapshotOptions): Promise<SnapshotInfo> {
  const dir = path.resolve(options.dir);
  await mkdir(dir, { recursive: true });
  const now = options.now ?? new Date();
  const existing = (await listSnapshots(dir)).filter((s) => !s.problem);
  const previous = existing.at(-1)?.id ?? null;
  const id = await freeId(dir, now);
  const tmp = path.join(dir, `.tmp-${id}-${randomBytes(4).toString('hex')}`);
  await mkdir(tmp);
  const client = await options.pool.connect();
  let broken = false;
  try {
    await beginConsistentRead(client);
    const columns = await tableColumns(client, SNAPSHOT_TABLE);
    if (columns.length === 0) throw new SnapshotError(`table ${SNAPSHOT_TABLE} does not exist: run \`prospector db migrate\` first`, 'invalid');
    const total = Number((await client.query(`SELECT count(*)::bigint AS n FROM ${quoteIdent(SNAPSHOT_TABLE)}`)).rows[0].n);
    const version = (await client.query(`SELECT current_setting('server_version') AS v`)).rows[0].v as string;
    const rows = await writeRows(client, tmp, columns, total, options.onProgress);
    await client.query('COMMIT');

    const manifest: SnapshotManifest = {
      format: SNAPSHOT_FORMAT,
      version: 1,
      id,
      created_at: now.toISOString(),
      previous_id: previous,
      table: SNAPSHOT_TABLE,
      key: [...SNAPSHOT_KEY],
      row_count: rows,
      columns: columns.map((c) => ({ name: c.name, type: c.type })),
      files: [
        { name: NDJSON_FILE, format: 'ndjson+gzip', ...(await fileFacts(path.join(tmp, NDJSON_FILE))) },
        { name: CSV_FILE, format: 'csv+gzip', ...(await fileFacts(path.join(tmp, CSV_FILE))) },
      ],
      server_version: version,
    };
    await writeFile(path.join(tmp, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
    // Appears whole or not at all: listings never see a half-written snapshot.
    await rename(tmp, path.join(dir, id));
    return await describe(dir, id);
  } catch (err) {
    // A connection that cannot even roll back is not given back to the pool.
    await client.query('ROLLBACK').catch(() => (broken = true));
    await rm(tmp, { recursive: true, force: true });
    throw err;
  } finally {
    client.release(broken);
  }
}

async function writeRows(client: pg.ClientBase, tmp: string, columns: ColumnInfo[], total: number, onProgress?: OnProgress): Promise<number> {
  const ndjson = new GzipLineWriter(path.join(tmp, NDJSON_FILE));
  const csv = new GzipLineWriter(path.join(tmp, CSV_FILE));
  let rows = 0;
  try {
    await csv.line(columns.map((c) => csvCell(c.name)).join(','));
    const order = SNAPSHOT_KEY.map((k) => `${quoteIdent(k)} COLLATE "C"`);
    for await (const json of streamRowJson(client, SNAPSHOT_TABLE, order, columns)) {
      await ndjson.line(json);
      const row = JSON.parse(json) as Record<string, unknown>;
      await csv.line(columns.map((c) => csvValue(row[c.name])).join(','));
      if (++rows % 1000 === 0) onProgress?.({ phase: 'rows', done: rows, total });
    }
  } finally {
    await Promise.all([ndjson.end(), csv.end()]);
  }
  onProgress?.({ phase: 'done', done: rows, total });
  return rows;
}

async function freeId(dir: string, now: Date): Promise<string> {
  const base = now.toISOString().replace(/[-:.]/g, '');
  for (let n = 1; ; n++) {
    const id = n === 1 ? base : `${base}-${n}`;
    if (!(await exists(path.join(dir, id)))) return id;
  }
}

async function fileFacts(file: string): Promise<{ bytes: number; sha256: string }> {
  return { bytes: (await stat(file)).size, sha256: await sha256File(file) };
}

/**
 * A CSV cell (RFC 4180). Arrays and objects are JSON. Text starting with
 * = + - @ or a tab gets a leading apostrophe: signal text is written by
 * strangers and must not run as a spreadsheet formula.
 */
export function csvValue(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return csvCell(/^[=+\-@\t\r]/.test(value) ? `'${value}` : value);
  if (typeof value === 'object') return csvCell(JSON.stringify(value));
  return csvCell(String(value));
}

function csvCell(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

// ---------------------------------------------------------------------------
// list / show / resolve

/** Snapshots in `dir`, oldest first. Directories that are not snapshots are ignored. */
export async function listSnapshots(dir: string): Promise<SnapshotInfo[]> {
  const resolved = path.resolve(dir);
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(resolved, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const ids = entries.filter((e) => e.isDirectory() && ID_PATTERN.test(e.name)).map((e) => e.name);
  const list = await Promise.all(ids.map((id) => describe(resolved, id)));
  return list.sort((a, b) => a.created_at.localeCompare(b.created_at) || a.id.localeCompare(b.id));
}

async function describe(dir: string, id: string): Promise<SnapshotInfo> {
  const where = path.join(dir, id);
  const names = await readdir(where);
  const sizes = await Promise.all(names.map(async (n) => (await stat(path.join(where, n))).size));
  const base = { id, path: where, bytes: sizes.reduce((a, b) => a + b, 0), files: names.length };
  try {
    const manifest = JSON.parse(await readFile(path.join(where, MANIFEST_FILE), 'utf8')) as SnapshotManifest;
    if (manifest.format !== SNAPSHOT_FORMAT || manifest.id !== id) throw new Error('not a signals snapshot manifest');
    return { ...base, created_at: manifest.created_at, row_count: manifest.row_count, previous_id: manifest.previous_id, manifest };
  } catch (err) {
    // Still listed (it takes space, retention may remove it), with its directory's time.
    const created = (await stat(where)).mtime.toISOString();
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'manifest.json is missing' : `manifest.json is unreadable (${(err as Error).message})`;
    return { ...base, created_at: created, row_count: null, previous_id: null, problem: why };
  }
}

/** An id, a unique prefix of one, or `latest`. */
export async function resolveSnapshot(dir: string, ref: string): Promise<SnapshotInfo> {
  const all = await listSnapshots(dir);
  if (ref === 'latest') {
    const latest = all.at(-1);
    if (!latest) throw new SnapshotError(`there are no snapshots in ${path.resolve(dir)}`, 'not_found');
    return latest;
  }
  const exact = all.find((s) => s.id === ref);
  if (exact) return exact;
  const matches = all.filter((s) => s.id.startsWith(ref));
  if (matches.length === 1) return matches[0];
  const known = all.length ? ` (have: ${all.slice(-5).map((s) => s.id).join(', ')}${all.length > 5 ? ', ...' : ''})` : ' (there are none)';
  if (matches.length > 1) throw new SnapshotError(`snapshot "${ref}" is ambiguous: ${matches.map((s) => s.id).join(', ')}`, 'not_found');
  throw new SnapshotError(`unknown snapshot "${ref}" in ${path.resolve(dir)}${known}`, 'not_found');
}

// ---------------------------------------------------------------------------
// verify

export interface VerifyResult {
  id: string;
  ok: boolean;
  problems: string[];
  files: { name: string; ok: boolean; expected_sha256: string; actual_sha256: string | null }[];
}

export async function verifySnapshot(dir: string, ref: string): Promise<VerifyResult> {
  const snap = await resolveSnapshot(dir, ref);
  if (!snap.manifest) return { id: snap.id, ok: false, problems: [snap.problem!], files: [] };
  const problems: string[] = [];
  const files: VerifyResult['files'] = [];
  if (!snap.manifest.files.some((f) => f.name === NDJSON_FILE)) problems.push(`the manifest lists no ${NDJSON_FILE}`);
  for (const f of snap.manifest.files) {
    const file = path.join(snap.path, path.basename(f.name));
    const actual = (await exists(file)) ? await sha256File(file) : null;
    const ok = actual === f.sha256;
    files.push({ name: f.name, ok, expected_sha256: f.sha256, actual_sha256: actual });
    if (actual === null) problems.push(`${f.name} is missing`);
    else if (!ok) problems.push(`${f.name} does not match its checksum (expected ${f.sha256.slice(0, 12)}…, found ${actual.slice(0, 12)}…)`);
  }
  return { id: snap.id, ok: problems.length === 0, problems, files };
}

async function requireIntact(dir: string, snap: SnapshotInfo): Promise<SnapshotManifest> {
  const check = await verifySnapshot(dir, snap.id);
  if (!check.ok) throw new SnapshotError(`snapshot ${snap.id} is corrupt: ${check.problems.join('; ')}`, 'corrupt', check.problems);
  return snap.manifest!;
}

// ---------------------------------------------------------------------------
// diff

export interface RowKey {
  source: string;
  external_id: string;
}

export interface DiffResult {
  from: string;
  to: string;
  counts: { added: number; removed: number; changed: number; unchanged: number };
  added: RowKey[];
  removed: RowKey[];
  changed: { key: RowKey; fields: string[]; values: Record<string, { from: unknown; to: unknown }> }[];
  /** Columns present in only one of the two snapshots (not compared). */
  columns: { added: string[]; removed: string[] };
  /** True when the lists were cut at `limit` (the counts are always complete). */
  truncated: boolean;
}

/**
 * Rows added, removed and changed between two snapshots, by (source, external_id).
 * `to` defaults to the latest, `from` to the snapshot before `to`.
 */
export async function diffSnapshots(dir: string, options: { from?: string; to?: string; limit?: number } = {}): Promise<DiffResult> {
  const to = await resolveSnapshot(dir, options.to ?? 'latest');
  const from = options.from ? await resolveSnapshot(dir, options.from) : await previousOf(dir, to);
  const [fromManifest, toManifest] = [await requireIntact(dir, from), await requireIntact(dir, to)];
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  const fromCols = fromManifest.columns.map((c) => c.name);
  const toCols = toManifest.columns.map((c) => c.name);
  const compared = toCols.filter((c) => fromCols.includes(c));
  const result: DiffResult = {
    from: from.id,
    to: to.id,
    counts: { added: 0, removed: 0, changed: 0, unchanged: 0 },
    added: [],
    removed: [],
    changed: [],
    columns: { added: toCols.filter((c) => !fromCols.includes(c)), removed: fromCols.filter((c) => !toCols.includes(c)) },
    truncated: false,
  };
  const push = <T>(list: T[], item: T) => (list.length < limit ? list.push(item) : (result.truncated = true));

  const a = keyedRows(from)[Symbol.asyncIterator]();
  const b = keyedRows(to)[Symbol.asyncIterator]();
  let ra = await a.next();
  let rb = await b.next();
  while (!ra.done || !rb.done) {
    const order = ra.done ? 1 : rb.done ? -1 : compareKeys(ra.value.key, rb.value.key);
    if (order < 0) {
      result.counts.removed += 1;
      push(result.removed, ra.value.key);
      ra = await a.next();
    } else if (order > 0) {
      result.counts.added += 1;
      push(result.added, rb.value.key);
      rb = await b.next();
    } else {
      const fields = compared.filter((c) => JSON.stringify(ra.value.row[c]) !== JSON.stringify(rb.value.row[c]));
      if (fields.length) {
        result.counts.changed += 1;
        const values = Object.fromEntries(fields.map((f) => [f, { from: ra.value.row[f] ?? null, to: rb.value.row[f] ?? null }]));
        push(result.changed, { key: rb.value.key, fields, values });
      } else result.counts.unchanged += 1;
      ra = await a.next();
      rb = await b.next();
    }
  }
  return result;
}

async function previousOf(dir: string, snap: SnapshotInfo): Promise<SnapshotInfo> {
  const all = (await listSnapshots(dir)).filter((s) => !s.problem);
  const named = snap.previous_id ? all.find((s) => s.id === snap.previous_id) : undefined;
  const before = named ?? all.filter((s) => s.created_at < snap.created_at || (s.created_at === snap.created_at && s.id < snap.id)).at(-1);
  if (!before) throw new SnapshotError(`snapshot ${snap.id} has no previous snapshot to compare with; name one: diff <from> <to>`, 'not_found');
  return before;
}

async function* keyedRows(snap: SnapshotInfo): AsyncGenerator<{ key: RowKey; row: Record<string, unknown> }> {
  let last: RowKey | undefined;
  for await (const line of readGzipLines(path.join(snap.path, NDJSON_FILE))) {
    if (!line) continue;
    const row = JSON.parse(line) as Record<string, unknown>;
    const key = { source: String(row.source), external_id: String(row.external_id) };
    if (last && compareKeys(last, key) >= 0) throw new SnapshotError(`snapshot ${snap.id} is not sorted by (source, external_id)`, 'corrupt');
    last = key;
    yield { key, row };
  }
}

/** Byte order of the UTF-8 text, the order PostgreSQL's "C" collation sorts the snapshot in. */
function compareKeys(a: RowKey, b: RowKey): number {
  return Buffer.compare(Buffer.from(a.source), Buffer.from(b.source)) || Buffer.compare(Buffer.from(a.external_id), Buffer.from(b.external_id));
}

// ---------------------------------------------------------------------------
// restore

export type RestoreMode = 'replace' | 'merge';

export interface RestoreSnapshotResult {
  id: string;
  mode: RestoreMode;
  rows: number;
  /** Rows in the table before (replace mode: all of them were removed). */
  replaced: number;
  inserted: number;
  updated: number;
}

/**
 * Loads a snapshot into the signals table in one transaction, after checking
 * its checksums (a corrupt snapshot is refused before anything changes).
 *
 * - replace: the table ends up holding exactly the snapshot's rows.
 * - merge: rows with the same (source, external_id) take the snapshot's values
 *   (keeping their own id); rows only in the snapshot are added (with their
 *   snapshot id when it is free); rows only in the table stay.
 */
export async function restoreSnapshot(options: { pool: Pool; dir: string; id: string; mode?: RestoreMode; onProgress?: OnProgress }): Promise<RestoreSnapshotResult> {
  const mode = options.mode ?? 'replace';
  if (mode !== 'replace' && mode !== 'merge') throw new SnapshotError(`restore mode must be replace or merge, got "${mode}"`, 'invalid');
  const snap = await resolveSnapshot(options.dir, options.id);
  const manifest = await requireIntact(options.dir, snap);
  const client = await options.pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    await settleSession(client);
    const tableCols = await tableColumns(client, SNAPSHOT_TABLE);
    const snapCols = new Set(manifest.columns.map((c) => c.name));
    const lost = [...snapCols].filter((c) => !tableCols.some((t) => t.name === c));
    if (lost.length) throw new SnapshotError(`the signals table lacks column(s) ${lost.join(', ')} of snapshot ${snap.id}: migrate the database first`, 'invalid');
    const columns = tableCols.filter((c) => snapCols.has(c.name) && !c.generated);

    const staged = await stage(client, snap, manifest, columns, options.onProgress);
    const before = Number((await client.query(`SELECT count(*)::bigint AS n FROM ${quoteIdent(SNAPSHOT_TABLE)}`)).rows[0].n);
    const counts = mode === 'replace' ? await replaceSignals(client, STAGE, columns) : await mergeSignals(client, STAGE, columns);
    await advanceSignalSequences(client, tableCols);
    await client.query('COMMIT');
    return { id: snap.id, mode, rows: staged, replaced: before, ...counts };
  } catch (err) {
    // A connection that cannot even roll back is not given back to the pool.
    await client.query('ROLLBACK').catch(() => (broken = true));
    throw err;
  } finally {
    client.release(broken);
  }
}

const STAGE = '_snapshot_restore';

/** Loads the snapshot's rows into a temporary table shaped like the columns restored. */
async function stage(client: pg.ClientBase, snap: SnapshotInfo, manifest: SnapshotManifest, columns: ColumnInfo[], onProgress?: OnProgress): Promise<number> {
  const list = columns.map((c) => quoteIdent(c.name)).join(', ');
  await client.query(`CREATE TEMP TABLE ${STAGE} ON COMMIT DROP AS SELECT ${list} FROM ${quoteIdent(SNAPSHOT_TABLE)} WITH NO DATA`);
  const stageCols = columns.map((c) => ({ ...c, generated: false, identity: false }));
  const batcher = new RowBatcher((rows) => insertJsonRows(client, STAGE, stageCols, rows));
  let rows = 0;
  for await (const line of readGzipLines(path.join(snap.path, NDJSON_FILE))) {
    if (!line) continue;
    await batcher.add(line);
    if (++rows % 1000 === 0) onProgress?.({ phase: 'load', done: rows, total: manifest.row_count });
  }
  await batcher.drain();
  if (rows !== manifest.row_count) {
    throw new SnapshotError(`snapshot ${snap.id} is corrupt: it holds ${rows} rows, its manifest says ${manifest.row_count}`, 'corrupt');
  }
  onProgress?.({ phase: 'done', done: rows, total: manifest.row_count });
  return rows;
}

// ---------------------------------------------------------------------------
// retention executor

export interface ApplyResult {
  dry_run: boolean;
  deleted: string[];
  freed_bytes: number;
}

/**
 * Deletes the snapshots a retention plan marks for deletion, only when forced.
 * Only directories named like snapshots inside `dir` are ever removed.
 */
export async function applyRetention(dir: string, plan: RetentionPlan, options: { force: boolean }): Promise<ApplyResult> {
  if (!options.force) return { dry_run: true, deleted: [], freed_bytes: 0 };
  const root = path.resolve(dir);
  const deleted: string[] = [];
  let freed = 0;
  for (const s of plan.delete) {
    if (!ID_PATTERN.test(s.id)) throw new SnapshotError(`refusing to delete "${s.id}": not a snapshot id`, 'invalid');
    await rm(path.join(root, s.id), { recursive: true, force: true });
    deleted.push(s.id);
    freed += s.bytes;
  }
  return { dry_run: false, deleted, freed_bytes: freed };
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}
