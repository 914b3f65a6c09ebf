import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip, type Gzip } from 'node:zlib';
import type pg from 'pg';
import type { Pool } from '../store/db.js';
import {
  appliedMigrations,
  appTables,
  beginConsistentRead,
  insertJsonRows,
  primaryKey,
  quoteIdent,
  resetSequence,
  sequenceLastValue,
  settleSession,
  streamRowJson,
  tableColumns,
  type ColumnInfo,
} from '../store/tables.js';

/**
 * Logical backup and restore of the application's tables.
 *
 * pg_dump must match the server's major version (the embedded server is
 * PostgreSQL 18; Debian's client is 15 and refuses to dump it), so the backup
 * is our own: every table in the app schema except the migrations ledger, read
 * in one consistent (REPEATABLE READ) transaction and written as gzip'd ndjson:
 *
 *   {"type":"header", format, version, created_at, server_version, migrations, tables:[{name, columns, primary_key, rows, sequences}]}
 *   {"type":"row","table":"signals","row":{...}}      one line per row, grouped by table in header order
 *   {"type":"trailer","tables":{name:{rows,sha256}},"sha256":...}
 *
 * The trailer's checksums cover the row lines per table and every line before
 * it, so a truncated or edited archive is refused before anything is touched.
 * A `<file>.sha256` beside the archive lets `sha256sum -c` check the file too.
 *
 * Rows travel as PostgreSQL's own JSON (`row_to_json`) and come back through
 * `json_populate_recordset`, so timestamps, numerics, arrays and jsonb round-trip
 * exactly without passing through JavaScript numbers.
 */

export const BACKUP_FORMAT = 'prospector.backup';
export const BACKUP_VERSION = 1;
const ROW_LINE_START = '{"type":"row","table":';

export class BackupError extends Error {
  constructor(
    message: string,
    readonly code: 'corrupt' | 'incompatible' | 'not_found' | 'invalid',
    readonly problems: string[] = [],
  ) {
    super(message);
    this.name = 'BackupError';
  }
}

export interface Progress {
  phase: string;
  done: number;
  total: number;
}
export type OnProgress = (p: Progress) => void;

/** Batches JSON rows by count and size, handing each full batch to `flush`. */
export class RowBatcher {
  private rows: string[] = [];
  private bytes = 0;
  constructor(
    private readonly flush: (rows: string[]) => Promise<void>,
    private readonly maxRows = 1_000,
    private readonly maxBytes = 4 * 1024 * 1024,
  ) {}

  async add(json: string): Promise<void> {
    this.rows.push(json);
    this.bytes += json.length;
    if (this.rows.length >= this.maxRows || this.bytes >= this.maxBytes) await this.drain();
  }

  async drain(): Promise<void> {
    if (this.rows.length === 0) return;
    const rows = this.rows;
    this.rows = [];
    this.bytes = 0;
    await this.flush(rows);
  }
}

/** Writes text lines to a gzip file with backpressure; `end()` resolves when the file is on disk. */
export class GzipLineWriter {
  private readonly gzip: Gzip;
  private readonly done: Promise<void>;
  private buffer: string[] = [];
  private bufferBytes = 0;

  constructor(file: string) {
    this.gzip = createGzip();
    this.done = pipeline(this.gzip, createWriteStream(file));
    this.done.catch(() => undefined); // surfaced by end()
  }

  async line(text: string): Promise<void> {
    this.buffer.push(text, '\n');
    this.bufferBytes += text.length + 1;
    if (this.bufferBytes >= 64 * 1024) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.buffer.length === 0) return;
    const chunk = this.buffer.join('');
    this.buffer = [];
    this.bufferBytes = 0;
    if (!this.gzip.write(chunk)) await once(this.gzip, 'drain');
  }

  async end(): Promise<void> {
    await this.flush();
    this.gzip.end();
    await this.done;
  }
}

/** Lines of a gzip'd text file; a damaged gzip stream rejects instead of hanging. */
export async function* readGzipLines(file: string): AsyncGenerator<string> {
  const gunzip = createGunzip();
  const feeding = pipeline(createReadStream(file), gunzip);
  let failure: unknown;
  feeding.catch((err) => {
    failure = err;
  });
  const lines = createInterface({ input: gunzip, crlfDelay: Infinity });
  try {
    for await (const line of lines) {
      if (failure) break;
      yield line;
    }
    await feeding.catch(() => undefined);
    if (failure) throw failure;
  } finally {
    lines.close();
    gunzip.destroy();
  }
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

// ---------------------------------------------------------------------------
// Backup

export interface BackupTable {
  name: string;
  columns: { name: string; type: string }[];
  primary_key: string[];
  rows: number;
  sequences: { column: string; sequence: string; last_value: number | null }[];
}

export interface BackupHeader {
  type: 'header';
  format: typeof BACKUP_FORMAT;
  version: number;
  created_at: string;
  database: string;
  server_version: string;
  migrations: string[];
  tables: BackupTable[];
}

export interface BackupTrailer {
  type: 'trailer';
  tables: Record<string, { rows: number; sha256: string }>;
  /** Over every line before the trailer, each with its newline. */
  sha256: string;
}

export interface BackupResult {
  file: string;
  bytes: number;
  /** Of the .gz file itself, as written to `<file>.sha256`. */
  sha256: string;
  created_at: string;
  tables: { name: string; rows: number }[];
}


function rowLinePrefix(table: string): string {
  return `${ROW_LINE_START}${JSON.stringify(table)},"row":`;
}

export function defaultBackupFile(dataDir: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.(\d{3})Z$/, '$1Z');
  return path.join(dataDir, 'backups', `prospector-${stamp}.ndjson.gz`);
}

export async function backupDatabase(options: { pool: Pool; file: string; onProgress?: OnProgress; now?: Date }): Promise<BackupResult> {
  const file = path.resolve(options.file);
  await mkdir(path.dirname(file), { recursive: true });
  const partial = `${file}.partial`;
  const client = await options.pool.connect();
  let broken = false;
  try {
    await beginConsistentRead(client);
    const { header, columnsOf } = await describeDatabase(client, options.now ?? new Date());
    const total = header.tables.reduce((n, t) => n + t.rows, 0);
    const writer = new GzipLineWriter(partial);
    const all = createHash('sha256');
    const emit = async (line: string) => {
      all.update(`${line}\n`);
      await writer.line(line);
    };
    await emit(JSON.stringify(header));
    const trailer: BackupTrailer = { type: 'trailer', tables: {}, sha256: '' };
    let done = 0;
    for (const table of header.tables) {
      const prefix = rowLinePrefix(table.name);
      const hash = createHash('sha256');
      let rows = 0;
      for await (const json of streamRowJson(client, table.name, table.primary_key.map(quoteIdent), columnsOf.get(table.name)!)) {
        const line = `${prefix}${json}}`;
        hash.update(`${line}\n`);
        await emit(line);
        rows += 1;
        if (++done % 1000 === 0) options.onProgress?.({ phase: table.name, done, total });
      }
      trailer.tables[table.name] = { rows, sha256: hash.digest('hex') };
    }
    trailer.sha256 = all.digest('hex');
    await writer.line(JSON.stringify(trailer));
    await writer.end();
    await client.query('COMMIT');
    options.onProgress?.({ phase: 'done', done, total });

    await rename(partial, file);
    const sha256 = await sha256File(file);
    await writeFile(`${file}.sha256`, `${sha256}  ${path.basename(file)}\n`);
    return {
      file,
      bytes: (await stat(file)).size,
      sha256,
      created_at: header.created_at,
      tables: header.tables.map((t) => ({ name: t.name, rows: trailer.tables[t.name].rows })),
    };
  } catch (err) {
    // A connection that cannot even roll back is not given back to the pool.
    await client.query('ROLLBACK').catch(() => (broken = true));
    await rm(partial, { force: true });
    throw err;
  } finally {
    client.release(broken);
  }
}

async function describeDatabase(client: pg.ClientBase, now: Date): Promise<{ header: BackupHeader; columnsOf: Map<string, ColumnInfo[]> }> {
  const meta = await client.query(`SELECT current_database() AS db, current_setting('server_version') AS version`);
  const tables: BackupTable[] = [];
  const columnsOf = new Map<string, ColumnInfo[]>();
  for (const name of await appTables(client)) {
    const columns = await tableColumns(client, name);
    columnsOf.set(name, columns);
    const count = await client.query(`SELECT count(*)::bigint AS n FROM ${quoteIdent(name)}`);
    const sequences = [];
    for (const c of columns.filter((c) => c.sequence)) {
      sequences.push({ column: c.name, sequence: c.sequence!, last_value: await sequenceLastValue(client, c.sequence!) });
    }
    tables.push({
      name,
      columns: columns.map((c) => ({ name: c.name, type: c.type })),
      primary_key: await primaryKey(client, name),
      rows: Number(count.rows[0].n),
      sequences,
    });
  }
  const header: BackupHeader = {
    type: 'header',
    format: BACKUP_FORMAT,
    version: BACKUP_VERSION,
    created_at: now.toISOString(),
    database: meta.rows[0].db,
    server_version: meta.rows[0].version,
    migrations: (await appliedMigrations(client)) ?? [],
    tables,
  };
  return { header, columnsOf };
}

// ---------------------------------------------------------------------------
// Reading and verifying an archive

interface ArchiveVisitor {
  row?(table: BackupTable, json: string): Promise<void> | void;
}

/**
 * Walks an archive line by line, checking its structure and every checksum.
 * Throws BackupError('corrupt') naming what is wrong.
 */
async function walkArchive(file: string, visitor: ArchiveVisitor = {}): Promise<{ header: BackupHeader; trailer: BackupTrailer }> {
  let header: BackupHeader | undefined;
  let trailer: BackupTrailer | undefined;
  const all = createHash('sha256');
  const counted = new Map<string, { rows: number; hash: ReturnType<typeof createHash> }>();
  let current = -1;
  let lineNo = 0;
  const corrupt = (why: string) => new BackupError(`backup ${file} is corrupt: ${why}`, 'corrupt', [why]);

  try {
    for await (const line of readGzipLines(file)) {
      lineNo += 1;
      if (trailer) throw corrupt(`data after the trailer (line ${lineNo})`);
      if (!header) {
        header = parseHeader(line, corrupt);
        all.update(`${line}\n`);
        continue;
      }
      if (line.startsWith(ROW_LINE_START)) {
        // Rows come grouped by table, in header order.
        while (current < header.tables.length && !(current >= 0 && line.startsWith(rowLinePrefix(header.tables[current].name)))) current += 1;
        const table = header.tables[current];
        if (!table || !line.endsWith('}')) throw corrupt(`unexpected row at line ${lineNo}`);
        const entry = counted.get(table.name) ?? { rows: 0, hash: createHash('sha256') };
        counted.set(table.name, entry);
        entry.rows += 1;
        entry.hash.update(`${line}\n`);
        all.update(`${line}\n`);
        await visitor.row?.(table, line.slice(rowLinePrefix(table.name).length, -1));
        continue;
      }
      const parsed = safeParse(line);
      if (parsed?.type !== 'trailer') throw corrupt(`unreadable line ${lineNo}`);
      trailer = parsed as BackupTrailer;
    }
  } catch (err) {
    if (err instanceof BackupError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BackupError(`backup file not found: ${file}`, 'not_found');
    throw corrupt(`cannot read it (${(err as Error).message})`);
  }
  if (!header) throw corrupt('it is empty');
  if (!trailer) throw corrupt('the trailer is missing (the file was cut short)');

  const problems: string[] = [];
  if (all.digest('hex') !== trailer.sha256) problems.push('checksum of the archive does not match its trailer');
  for (const table of header.tables) {
    const got = counted.get(table.name);
    const want = trailer.tables[table.name];
    if (!want) problems.push(`trailer has no checksum for table ${table.name}`);
    else {
      if ((got?.rows ?? 0) !== want.rows) problems.push(`table ${table.name}: ${got?.rows ?? 0} rows, trailer says ${want.rows}`);
      if ((got?.hash ?? createHash('sha256')).digest('hex') !== want.sha256) problems.push(`table ${table.name}: checksum mismatch`);
    }
  }
  if (problems.length) throw new BackupError(`backup ${file} is corrupt: ${problems.join('; ')}`, 'corrupt', problems);
  return { header, trailer };
}

function parseHeader(line: string, corrupt: (why: string) => BackupError): BackupHeader {
  const header = safeParse(line) as BackupHeader | undefined;
  if (header?.type !== 'header' || header.format !== BACKUP_FORMAT) throw corrupt('not a Prospector backup (no header)');
  if (header.version !== BACKUP_VERSION) throw new BackupError(`backup format version ${header.version} is not supported (this release reads ${BACKUP_VERSION})`, 'incompatible');
  return header;
}

function safeParse(line: string): { type?: string } | undefined {
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}

export interface BackupInspection {
  file: string;
  bytes: number;
  header: BackupHeader;
  tables: { name: string; rows: number }[];
}

/** Reads the whole archive and checks every checksum; throws BackupError when it is not intact. */
export async function verifyBackup(file: string): Promise<BackupInspection> {
  const resolved = path.resolve(file);
  const { header, trailer } = await walkArchive(resolved);
  return {
    file: resolved,
    bytes: (await stat(resolved)).size,
    header,
    tables: header.tables.map((t) => ({ name: t.name, rows: trailer.tables[t.name].rows })),
  };
}

// ---------------------------------------------------------------------------
// Restore

export interface RestoreDatabaseResult {
  file: string;
  tables: { name: string; rows: number; replaced: number }[];
  /** User triggers switched off for the load and back on before commit. */
  triggers: string[];
  /** Tables in the database the backup does not know; left as they were. */
  untouched: string[];
}

/**
 * Replaces the contents of every table in the backup with the backup's rows,
 * in one transaction: it all lands, or nothing changes.
 *
 * The schema must be in place (run migrations first: `prospector db restore`
 * does). User triggers on the restored tables (the append-only audit guard) are
 * disabled by name with ALTER TABLE inside the transaction and enabled again
 * before it commits, so a failed restore leaves them exactly as they were.
 */
export async function restoreDatabase(options: { pool: Pool; file: string; onProgress?: OnProgress }): Promise<RestoreDatabaseResult> {
  const inspection = await verifyBackup(options.file);
  const { header } = inspection;
  const total = inspection.tables.reduce((n, t) => n + t.rows, 0);
  const client = await options.pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    await settleSession(client);
    const target = await checkTarget(client, header);
    const names = header.tables.map((t) => t.name);
    const replaced = new Map<string, number>();
    for (const name of names) {
      replaced.set(name, Number((await client.query(`SELECT count(*)::bigint AS n FROM ${quoteIdent(name)}`)).rows[0].n));
    }
    const triggers = await disableUserTriggers(client, names);
    await client.query(`TRUNCATE ${names.map(quoteIdent).join(', ')}`);

    let done = 0;
    let batchTable: BackupTable | undefined;
    let batcher: RowBatcher | undefined;
    const selfReferencing = await selfReferencingTables(client);
    // Rows are loaded as they are read and the checksums are checked again at the end: a file
    // changed between the check above and this read makes walkArchive throw, rolling back.
    await walkArchive(inspection.file, {
      async row(table, json) {
        if (batchTable !== table) {
          await batcher?.drain();
          batchTable = table;
          const columns = target.get(table.name)!;
          // A foreign key into its own table is checked per statement: load such a table in one.
          batcher = selfReferencing.has(table.name)
            ? new RowBatcher((rows) => insertJsonRows(client, table.name, columns, rows), Infinity, Infinity)
            : new RowBatcher((rows) => insertJsonRows(client, table.name, columns, rows));
        }
        await batcher!.add(json);
        if (++done % 1000 === 0) options.onProgress?.({ phase: table.name, done, total });
      },
    });
    await batcher?.drain();

    for (const table of header.tables) {
      for (const s of table.sequences) {
        const column = target.get(table.name)!.find((c) => c.name === s.column);
        if (column?.sequence) await resetSequence(client, table.name, s.column, column.sequence, s.last_value);
      }
    }
    await enableTriggers(client, triggers);
    const all = await appTables(client);
    await client.query('COMMIT');
    options.onProgress?.({ phase: 'done', done, total });
    return {
      file: inspection.file,
      tables: inspection.tables.map((t) => ({ ...t, replaced: replaced.get(t.name) ?? 0 })),
      triggers: triggers.map((t) => `${t.table}.${t.trigger}`),
      untouched: all.filter((n) => !names.includes(n)),
    };
  } catch (err) {
    // A connection that cannot even roll back is not given back to the pool.
    await client.query('ROLLBACK').catch(() => (broken = true));
    throw err;
  } finally {
    client.release(broken);
  }
}

/**
 * The target must hold every table and column of the backup and every
 * migration it was taken at; extra columns in the target take their defaults.
 */
async function checkTarget(client: pg.ClientBase, header: BackupHeader): Promise<Map<string, ColumnInfo[]>> {
  const problems: string[] = [];
  const applied = await appliedMigrations(client);
  if (applied === null) {
    throw new BackupError('the target database has no schema yet: run `prospector db migrate` first', 'incompatible', ['no pgmigrations table']);
  }
  const missingMigrations = header.migrations.filter((m) => !applied.includes(m));
  if (missingMigrations.length) problems.push(`migrations not applied here: ${missingMigrations.join(', ')}`);
  const target = new Map<string, ColumnInfo[]>();
  for (const table of header.tables) {
    const columns = await tableColumns(client, table.name);
    if (columns.length === 0) {
      problems.push(`table ${table.name} does not exist`);
      continue;
    }
    const missing = table.columns.filter((c) => !columns.some((t) => t.name === c.name)).map((c) => c.name);
    if (missing.length) problems.push(`table ${table.name} lacks column(s) ${missing.join(', ')}`);
    const backupNames = new Set(table.columns.map((c) => c.name));
    target.set(table.name, columns.filter((c) => backupNames.has(c.name)));
  }
  if (problems.length) {
    throw new BackupError(
      `the backup does not fit this database (${problems.join('; ')}); migrate it to the backup's schema first (prospector db migrate, from a release at least as new as the backup)`,
      'incompatible',
      problems,
    );
  }
  return target;
}

async function selfReferencingTables(client: pg.ClientBase): Promise<Set<string>> {
  const { rows } = await client.query(
    `SELECT DISTINCT c.relname AS name FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE k.contype = 'f' AND k.conrelid = k.confrelid AND n.nspname = current_schema()`,
  );
  return new Set(rows.map((r) => r.name as string));
}

async function disableUserTriggers(client: pg.ClientBase, tables: string[]): Promise<{ table: string; trigger: string }[]> {
  const { rows } = await client.query(
    `SELECT c.relname AS table, t.tgname AS trigger
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = current_schema() AND c.relname = ANY($1) AND NOT t.tgisinternal AND t.tgenabled <> 'D'
      ORDER BY c.relname, t.tgname`,
    [tables],
  );
  for (const r of rows) await client.query(`ALTER TABLE ${quoteIdent(r.table)} DISABLE TRIGGER ${quoteIdent(r.trigger)}`);
  return rows as { table: string; trigger: string }[];
}

async function enableTriggers(client: pg.ClientBase, triggers: { table: string; trigger: string }[]): Promise<void> {
  for (const t of triggers) await client.query(`ALTER TABLE ${quoteIdent(t.table)} ENABLE TRIGGER ${quoteIdent(t.trigger)}`);
}

/** Rows now in each of the backup's tables (or null when the table is missing): what a restore would replace. */
export async function currentRowCounts(pool: Pool, tables: string[]): Promise<Record<string, number | null>> {
  const out: Record<string, number | null> = {};
  for (const name of tables) {
    const exists = await pool.query(`SELECT to_regclass(format('%I.%I', current_schema(), $1::text)) IS NOT NULL AS ok`, [name]);
    out[name] = exists.rows[0].ok ? Number((await pool.query(`SELECT count(*)::bigint AS n FROM ${quoteIdent(name)}`)).rows[0].n) : null;
  }
  return out;
}
