import type pg from 'pg';
import QueryStream from 'pg-query-stream';

/**
 * Whole tables, generically over their columns: what backups (lib/ops/backup.ts)
 * and signal snapshots (lib/ops/snapshots.ts) read and write. Catalog reads,
 * consistent streams of rows as PostgreSQL's JSON, bulk inserts of such rows
 * and sequence repair. Business writes never go through here: each table's own
 * module in this folder owns those; this is for restoring a table as it was.
 */

const EXCLUDED_TABLES = new Set(['pgmigrations']);

export interface ColumnInfo {
  name: string;
  type: string;
  /** GENERATED ALWAYS AS (...) STORED: computed by the server, never inserted. */
  generated: boolean;
  identity: boolean;
  /** The sequence behind a serial or identity column, schema-qualified. */
  sequence: string | null;
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export async function tableColumns(client: pg.ClientBase, table: string): Promise<ColumnInfo[]> {
  const { rows } = await client.query(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
            a.attgenerated <> '' AS generated, a.attidentity <> '' AS identity,
            pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname) AS sequence
       FROM pg_attribute a
       JOIN pg_class c ON c.oid = a.attrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = current_schema() AND c.relname = $1 AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [table],
  );
  return rows as ColumnInfo[];
}

export async function primaryKey(client: pg.ClientBase, table: string): Promise<string[]> {
  const { rows } = await client.query(
    `SELECT a.attname AS name
       FROM pg_index i
       JOIN pg_class c ON c.oid = i.indrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
      WHERE n.nspname = current_schema() AND c.relname = $1 AND i.indisprimary
      ORDER BY k.ord`,
    [table],
  );
  return rows.map((r) => r.name as string);
}

/** A read transaction whose rows all come from one moment, with stable JSON output. */
export async function beginConsistentRead(client: pg.ClientBase): Promise<void> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  await settleSession(client);
}

/** No statement timeout for long streams; UTC so timestamps serialise the same everywhere. */
export async function settleSession(client: pg.ClientBase): Promise<void> {
  await client.query(`SET LOCAL statement_timeout = 0`);
  await client.query(`SET LOCAL TIME ZONE 'UTC'`);
  await client.query(`SET LOCAL intervalstyle = 'iso_8601'`);
}

/**
 * `json` (not jsonb) keeps its text exactly, newlines included, and a raw
 * newline cannot sit in an ndjson line: such columns travel as JSON strings
 * holding their text, and are parsed back on insert.
 */
export function travelsAsText(column: { type: string }): boolean {
  return column.type === 'json' || column.type === 'json[]';
}

/**
 * Rows of a table as PostgreSQL's JSON text, one string per row, streamed
 * through a cursor so memory stays flat however many rows there are.
 */
export async function* streamRowJson(client: pg.ClientBase, table: string, orderBy: string[], columns: ColumnInfo[]): AsyncGenerator<string> {
  const order = orderBy.length ? ` ORDER BY ${orderBy.join(', ')}` : '';
  const from = columns.some(travelsAsText)
    ? `(SELECT ${columns.map((c) => (travelsAsText(c) ? `${quoteIdent(c.name)}::text AS ${quoteIdent(c.name)}` : quoteIdent(c.name))).join(', ')} FROM ${quoteIdent(table)}${order}) AS r`
    : `${quoteIdent(table)} AS r${order}`;
  const stream = client.query(new QueryStream(`SELECT row_to_json(r.*)::text AS j FROM ${from}`, [], { batchSize: 500 }));
  for await (const row of stream as AsyncIterable<{ j: string }>) {
    if (row.j.includes('\n') || row.j.includes('\r')) throw new Error(`a row of ${table} does not serialise to one line (raw json inside a composite type?)`);
    yield row.j;
  }
}

/**
 * Inserts rows given as JSON text, letting PostgreSQL parse them into the
 * table's row type. Only `columns` are written, so a column the rows lack takes
 * its default, and generated columns are left to the server.
 */
export async function insertJsonRows(client: pg.ClientBase, table: string, columns: ColumnInfo[], rowsJson: string[]): Promise<void> {
  if (rowsJson.length === 0) return;
  const writable = columns.filter((c) => !c.generated);
  const list = writable.map((c) => quoteIdent(c.name)).join(', ');
  const overriding = writable.some((c) => c.identity) ? ' OVERRIDING SYSTEM VALUE' : '';
  const rowType = `null::${quoteIdent(table)}`;
  const source = writable.some(travelsAsText)
    ? `SELECT ${writable.map((c) => (travelsAsText(c) ? `(e.value->>${quoteLiteral(c.name)})::${c.type}` : `p.${quoteIdent(c.name)}`)).join(', ')}
         FROM json_array_elements($1::json) AS e, LATERAL json_populate_record(${rowType}, e.value) AS p`
    : `SELECT ${list} FROM json_populate_recordset(${rowType}, $1::json)`;
  await client.query(`INSERT INTO ${quoteIdent(table)} (${list})${overriding} ${source}`, [`[${rowsJson.join(',')}]`]);
}

function quoteLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

/**
 * Moves a serial/identity sequence to `value` (what the source had) but never
 * below the largest id now in the table, so the next insert cannot collide.
 */
export async function resetSequence(client: pg.ClientBase, table: string, column: string, sequence: string, value: number | null): Promise<void> {
  const { rows } = await client.query(`SELECT max(${quoteIdent(column)})::bigint AS m FROM ${quoteIdent(table)}`);
  const max = rows[0].m === null ? null : Number(rows[0].m);
  const target = Math.max(value ?? 0, max ?? 0);
  if (target > 0) await client.query('SELECT setval($1::regclass, $2, true)', [sequence, target]);
  else await client.query('SELECT setval($1::regclass, 1, false)', [sequence]);
}

/** A sequence's last value handed out (null if none yet). */
export async function sequenceLastValue(client: pg.ClientBase, sequence: string): Promise<number | null> {
  const { rows } = await client.query('SELECT pg_sequence_last_value($1::regclass)::bigint AS v', [sequence]);
  return rows[0].v === null ? null : Number(rows[0].v);
}

/** The app's tables (current schema, ordinary and partitioned, not the migrations ledger), parents before children. */
export async function appTables(client: pg.ClientBase): Promise<string[]> {
  const { rows } = await client.query(
    `SELECT c.relname AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = current_schema() AND c.relkind IN ('r','p') AND NOT c.relispartition
      ORDER BY c.relname`,
  );
  const names = rows.map((r) => r.name as string).filter((n) => !EXCLUDED_TABLES.has(n));
  const { rows: fks } = await client.query(
    `SELECT child.relname AS child, parent.relname AS parent
       FROM pg_constraint k
       JOIN pg_class child ON child.oid = k.conrelid
       JOIN pg_class parent ON parent.oid = k.confrelid
       JOIN pg_namespace n ON n.oid = child.relnamespace
      WHERE k.contype = 'f' AND n.nspname = current_schema() AND child.oid <> parent.oid`,
  );
  return parentsFirst(names, fks as { child: string; parent: string }[]);
}

function parentsFirst(names: string[], fks: { child: string; parent: string }[]): string[] {
  const ordered: string[] = [];
  const visiting = new Set<string>();
  const visit = (name: string) => {
    if (ordered.includes(name) || visiting.has(name)) return; // a cycle loads in name order
    visiting.add(name);
    for (const fk of fks) if (fk.child === name && names.includes(fk.parent)) visit(fk.parent);
    ordered.push(name);
  };
  names.forEach(visit);
  return ordered;
}

/** The migrations applied here, in order (null before the first). */
export async function appliedMigrations(client: pg.ClientBase): Promise<string[] | null> {
  const exists = await client.query(`SELECT to_regclass(format('%I.pgmigrations', current_schema())) IS NOT NULL AS ok`);
  if (!exists.rows[0].ok) return null;
  const { rows } = await client.query('SELECT name FROM pgmigrations ORDER BY id');
  return rows.map((r) => r.name as string);
}
