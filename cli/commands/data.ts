import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import ms from 'ms';
import {
  BackupError,
  backupDatabase,
  currentRowCounts,
  defaultBackupFile,
  restoreDatabase,
  verifyBackup,
  type OnProgress,
} from '../../lib/ops/backup.js';
import { migrate } from '../../lib/store/db.js';
import { countSignals } from '../../lib/store/signals.js';
import {
  parseDuration,
  parseSize,
  planPrune,
  planQuota,
  planRetain,
  RetentionPolicyError,
  type RetentionPlan,
} from '../../lib/ops/retention.js';
import {
  applyRetention,
  createSnapshot,
  defaultSnapshotDir,
  diffSnapshots,
  listSnapshots,
  resolveSnapshot,
  restoreSnapshot,
  SnapshotError,
  verifySnapshot,
  type DiffResult,
  type RestoreMode,
  type SnapshotInfo,
} from '../../lib/ops/snapshots.js';
import { CliError, type CliContext } from '../context.js';

/**
 * Data management: snapshots of the signal store, retention over them
 * (prune / quota / retain, dry-run unless --force), and database backup,
 * restore and migrations. Exit codes: 2 bad input, 3 quota blocked by
 * keep_min, 4 not found, 5 corrupt snapshot or backup, 6 backup does not fit
 * the database's schema.
 */
export const EXIT = { badInput: 2, blocked: 3, notFound: 4, corrupt: 5, incompatible: 6 } as const;

interface DirOpts {
  dir?: string;
  json?: boolean;
}

export function register(program: Command, ctx: CliContext): void {
  registerSnapshot(program, ctx);
  registerRetention(program, ctx);
  registerDb(program, ctx);
}

// ---------------------------------------------------------------------------
// snapshot

function registerSnapshot(program: Command, ctx: CliContext): void {
  const snapshot = program
    .command('snapshot')
    .description('snapshots of the signal store (gzip ndjson + csv, checksummed) in DATA_DIR/snapshots or --dir');

  snapshot
    .command('create')
    .description('write a snapshot of the signals table')
    .option('--dir <dir>', 'snapshot directory (default: SNAPSHOT_DIR or DATA_DIR/snapshots)')
    .option('--json', 'print JSON')
    .action((opts: DirOpts) =>
      guard(async () => {
        const dir = await snapshotDir(ctx, opts);
        const pool = await ctx.getPool();
        const snap = await withProgress('snapshot', !opts.json, (onProgress) => createSnapshot({ pool, dir, onProgress }));
        if (opts.json) return printJson(summary(snap));
        print(`Created snapshot ${snap.id}: ${snap.row_count} rows, ${formatBytes(snap.bytes)} in ${snap.path}`);
        if (snap.previous_id) note(`Compare with the previous one: prospector snapshot diff ${snap.id}`);
      }),
    );

  snapshot
    .command('list')
    .description('list snapshots, oldest first')
    .option('--dir <dir>', 'snapshot directory')
    .option('--json', 'print JSON')
    .action((opts: DirOpts) =>
      guard(async () => {
        const dir = await snapshotDir(ctx, opts);
        const list = await listSnapshots(dir);
        if (opts.json) return printJson(list.map(summary));
        if (list.length === 0) return note(`No snapshots in ${dir}. Create one: prospector snapshot create`);
        print(
          table(
            ['ID', 'CREATED (UTC)', 'ROWS', 'SIZE', 'FILES', 'STATUS'],
            list.map((s) => [s.id, when(s.created_at), s.row_count ?? '?', formatBytes(s.bytes), s.files, s.problem ? `unreadable: ${s.problem}` : 'ok']),
          ),
        );
        note(`${list.length} snapshot(s), ${formatBytes(list.reduce((n, s) => n + s.bytes, 0))} in ${dir}`);
      }),
    );

  snapshot
    .command('show <id>')
    .description('show a snapshot\'s manifest and check its files (id, unique prefix, or "latest")')
    .option('--dir <dir>', 'snapshot directory')
    .option('--json', 'print JSON')
    .action((id: string, opts: DirOpts) =>
      guard(async () => {
        const dir = await snapshotDir(ctx, opts);
        const snap = await resolveSnapshot(dir, id);
        const check = await verifySnapshot(dir, snap.id);
        if (opts.json) return printJson({ ...summary(snap), manifest: snap.manifest ?? null, verify: check });
        print(`Snapshot ${snap.id}`);
        print(`  path      ${snap.path}`);
        print(`  created   ${snap.created_at}`);
        print(`  previous  ${snap.previous_id ?? '-'}`);
        print(`  rows      ${snap.row_count ?? '?'}`);
        print(`  size      ${formatBytes(snap.bytes)} in ${snap.files} files`);
        if (snap.manifest) {
          print(`  columns   ${snap.manifest.columns.map((c) => c.name).join(', ')}`);
          print('  files');
          for (const f of check.files) print(`    ${f.name.padEnd(20)} ${formatBytes(snap.manifest.files.find((m) => m.name === f.name)!.bytes).padStart(10)}  sha256 ${f.expected_sha256.slice(0, 16)}…  ${f.ok ? 'ok' : f.actual_sha256 ? 'CHECKSUM MISMATCH' : 'MISSING'}`);
        }
        print(`  status    ${check.ok ? 'ok' : `CORRUPT: ${check.problems.join('; ')}`}`);
        if (!check.ok) throw new CliError(`snapshot ${snap.id} is corrupt`, EXIT.corrupt);
      }),
    );

  snapshot
    .command('verify [id]')
    .description('check snapshot files against their sha256 checksums (all snapshots when no id is given)')
    .option('--dir <dir>', 'snapshot directory')
    .option('--json', 'print JSON')
    .action((id: string | undefined, opts: DirOpts) =>
      guard(async () => {
        const dir = await snapshotDir(ctx, opts);
        const ids = id ? [(await resolveSnapshot(dir, id)).id] : (await listSnapshots(dir)).map((s) => s.id);
        const results = [];
        for (const one of ids) results.push(await verifySnapshot(dir, one));
        const bad = results.filter((r) => !r.ok);
        if (opts.json) printJson(results);
        else {
          if (results.length === 0) note(`No snapshots in ${dir}.`);
          for (const r of results) print(`${r.ok ? 'ok     ' : 'CORRUPT'}  ${r.id}${r.ok ? '' : `  ${r.problems.join('; ')}`}`);
        }
        if (bad.length) throw new CliError(`${bad.length} of ${results.length} snapshot(s) failed verification: ${bad.map((b) => b.id).join(', ')}`, EXIT.corrupt);
      }),
    );

  snapshot
    .command('diff [from] [to]')
    .description('rows added, removed and changed by (source, external_id); with one id: that snapshot against its previous; with none: the latest against its previous')
    .option('--dir <dir>', 'snapshot directory')
    .option('--limit <n>', 'rows listed per kind (counts are always complete)', '50')
    .option('--json', 'print JSON')
    .action((a: string | undefined, b: string | undefined, opts: DirOpts & { limit: string }) =>
      guard(async () => {
        const dir = await snapshotDir(ctx, opts);
        const limit = wholeNumber(opts.limit, '--limit');
        const diff = await diffSnapshots(dir, b ? { from: a, to: b, limit } : { to: a, limit });
        if (opts.json) return printJson(diff);
        printDiff(diff);
      }),
    );

  snapshot
    .command('restore <id>')
    .description('load a snapshot into the signals table in one transaction (dry run unless --force)')
    .option('--dir <dir>', 'snapshot directory')
    .option('--mode <mode>', 'replace: the table becomes the snapshot; merge: snapshot rows win by (source, external_id), other rows stay', 'replace')
    .option('--force', 'really restore (default: check the snapshot and say what would happen)')
    .option('--json', 'print JSON')
    .action((id: string, opts: DirOpts & { mode: string; force?: boolean }) =>
      guard(async () => {
        if (opts.mode !== 'replace' && opts.mode !== 'merge') throw new CliError(`--mode must be replace or merge, got "${opts.mode}"`, EXIT.badInput);
        const dir = await snapshotDir(ctx, opts);
        const snap = await resolveSnapshot(dir, id);
        const check = await verifySnapshot(dir, snap.id);
        if (!check.ok) throw new CliError(`snapshot ${snap.id} is corrupt, refusing to restore it: ${check.problems.join('; ')}`, EXIT.corrupt);
        const pool = await ctx.getPool();
        if (!opts.force) {
          const now = await countSignals(pool);
          const plan = { dry_run: true, id: snap.id, mode: opts.mode, snapshot_rows: snap.row_count, table_rows: now };
          if (opts.json) return printJson(plan);
          print(`Snapshot ${snap.id} is intact: ${snap.row_count} rows; the signals table has ${now} rows now.`);
          print(opts.mode === 'replace' ? `A replace restore would leave exactly the snapshot's ${snap.row_count} rows.` : `A merge restore would overwrite rows with the same (source, external_id) and add the rest.`);
          return note(`Dry run: nothing changed. Run again with --force to restore.`);
        }
        const result = await withProgress('restore', !opts.json, (onProgress) =>
          restoreSnapshot({ pool, dir, id: snap.id, mode: opts.mode as RestoreMode, onProgress }),
        );
        if (opts.json) return printJson({ dry_run: false, ...result });
        print(`Restored snapshot ${result.id} (${result.mode}): ${result.inserted} rows inserted, ${result.updated} updated; the table had ${result.replaced} rows before.`);
      }),
    );
}

function summary(s: SnapshotInfo) {
  return { id: s.id, path: s.path, created_at: s.created_at, rows: s.row_count, bytes: s.bytes, files: s.files, previous_id: s.previous_id, problem: s.problem ?? null };
}

function printDiff(diff: DiffResult): void {
  const c = diff.counts;
  print(`Diff ${diff.from} → ${diff.to}: ${c.added} added, ${c.removed} removed, ${c.changed} changed, ${c.unchanged} unchanged`);
  if (diff.columns.added.length || diff.columns.removed.length) {
    print(`Columns added: ${diff.columns.added.join(', ') || '-'}; removed: ${diff.columns.removed.join(', ') || '-'} (not compared)`);
  }
  for (const k of diff.added) print(`+ ${k.source}/${k.external_id}`);
  for (const k of diff.removed) print(`- ${k.source}/${k.external_id}`);
  for (const ch of diff.changed) {
    print(`~ ${ch.key.source}/${ch.key.external_id}: ${ch.fields.map((f) => `${f} ${short(ch.values[f].from)} → ${short(ch.values[f].to)}`).join('; ')}`);
  }
  if (diff.truncated) note('Lists cut short; use --limit or --json for more.');
}

function short(value: unknown): string {
  const text = JSON.stringify(value) ?? 'null';
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

// ---------------------------------------------------------------------------
// retention

function registerRetention(program: Command, ctx: CliContext): void {
  program
    .command('prune')
    .description('keep the N newest snapshots, delete the rest (dry run unless --force)')
    .requiredOption('--keep <n>', 'how many of the newest snapshots to keep')
    .option('--dir <dir>', 'snapshot directory')
    .option('--force', 'really delete')
    .option('--json', 'print JSON')
    .action((opts: DirOpts & { keep: string; force?: boolean }) =>
      guard(async () => {
        const keep = wholeNumber(opts.keep, '--keep');
        await runRetention(ctx, opts, (snaps, now) => planPrune(snaps, { keep }, now));
      }),
    );

  program
    .command('quota')
    .description('delete the oldest snapshots until they fit in max bytes and/or max files, never below --keep-min (dry run unless --force)')
    .option('--max-bytes <size>', 'total size allowed, e.g. 500MB, 2GiB or plain bytes')
    .option('--max-files <n>', 'total files allowed (each snapshot has 3: manifest, ndjson.gz, csv.gz)')
    .option('--keep-min <n>', 'never keep fewer than this many of the newest', '1')
    .option('--dir <dir>', 'snapshot directory')
    .option('--force', 'really delete')
    .option('--json', 'print JSON')
    .action((opts: DirOpts & { maxBytes?: string; maxFiles?: string; keepMin: string; force?: boolean }) =>
      guard(async () => {
        if (opts.maxBytes === undefined && opts.maxFiles === undefined) throw new CliError('quota needs --max-bytes and/or --max-files', EXIT.badInput);
        const policy = {
          maxBytes: opts.maxBytes === undefined ? undefined : size(opts.maxBytes, '--max-bytes'),
          maxFiles: opts.maxFiles === undefined ? undefined : wholeNumber(opts.maxFiles, '--max-files'),
          keepMin: wholeNumber(opts.keepMin, '--keep-min'),
        };
        await runRetention(ctx, opts, (snaps, now) => planQuota(snaps, policy, now));
      }),
    );

  program
    .command('retain')
    .description('keep the union of a keep-age window, hourly/daily/weekly/monthly/yearly buckets and the --keep-min newest; delete the rest (dry run unless --force)')
    .option('--keep-age <duration>', 'keep everything newer than this, e.g. 7d, 36h, 2w')
    .option('--hourly <n>', 'keep the newest snapshot of each of the last N hours that have one')
    .option('--daily <n>', 'likewise per day (UTC)')
    .option('--weekly <n>', 'likewise per ISO week')
    .option('--monthly <n>', 'likewise per month')
    .option('--yearly <n>', 'likewise per year')
    .option('--keep-min <n>', 'always keep at least this many of the newest', '1')
    .option('--dir <dir>', 'snapshot directory')
    .option('--force', 'really delete')
    .option('--json', 'print JSON')
    .action((opts: DirOpts & Record<'keepAge' | 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly', string | undefined> & { keepMin: string; force?: boolean }) =>
      guard(async () => {
        const n = (v: string | undefined, flag: string) => (v === undefined ? undefined : wholeNumber(v, flag));
        const policy = {
          keepAgeMs: opts.keepAge === undefined ? undefined : duration(opts.keepAge, '--keep-age'),
          hourly: n(opts.hourly, '--hourly'),
          daily: n(opts.daily, '--daily'),
          weekly: n(opts.weekly, '--weekly'),
          monthly: n(opts.monthly, '--monthly'),
          yearly: n(opts.yearly, '--yearly'),
          keepMin: wholeNumber(opts.keepMin, '--keep-min'),
        };
        await runRetention(ctx, opts, (snaps, now) => planRetain(snaps, policy, now));
      }),
    );
}

async function runRetention(ctx: CliContext, opts: DirOpts & { force?: boolean }, plan: (snaps: SnapshotInfo[], now: Date) => RetentionPlan): Promise<void> {
  const dir = await snapshotDir(ctx, opts);
  const result = plan(await listSnapshots(dir), new Date());
  const applied = await applyRetention(dir, result, { force: Boolean(opts.force) });
  if (opts.json) printJson({ ...result, dir, ...applied });
  else printPlan(result, applied.dry_run);
  if (result.blocked) throw new CliError(`quota blocked: ${result.blocked.reason}`, EXIT.blocked);
}

function printPlan(plan: RetentionPlan, dryRun: boolean): void {
  const { before, after } = plan.totals;
  const settings = Object.entries(plan.settings)
    .filter(([, v]) => v !== null && v !== 0)
    .map(([k, v]) => (k === 'keep_age_ms' ? `keep_age=${ms(v as number)}` : `${k}=${v}`))
    .join(' ');
  print(`${plan.policy} (${settings}): ${before.snapshots} snapshot(s), ${formatBytes(before.bytes)}, ${before.files} files → keep ${after.snapshots} (${formatBytes(after.bytes)}, ${after.files} files), delete ${plan.delete.length}`);
  const rows = [...plan.keep.map((s) => ({ action: 'keep', s })), ...plan.delete.map((s) => ({ action: 'delete', s }))];
  if (rows.length) {
    rows.sort((x, y) => y.s.created_at.localeCompare(x.s.created_at));
    print(
      table(
        ['ACTION', 'ID', 'CREATED (UTC)', 'SIZE', 'WHY KEPT'],
        rows.map(({ action, s }) => [action, s.id, when(s.created_at), formatBytes(s.bytes), s.reasons.join(', ') || '-']),
      ),
    );
  }
  if (plan.blocked) print(`BLOCKED: ${plan.blocked.reason}`);
  if (plan.delete.length === 0) print('Nothing to delete.');
  else if (dryRun) print(`Dry run: nothing deleted. Run again with --force to delete ${plan.delete.length} snapshot(s) (${formatBytes(before.bytes - after.bytes)}).`);
  else print(`Deleted ${plan.delete.length} snapshot(s), freed ${formatBytes(before.bytes - after.bytes)}.`);
}

// ---------------------------------------------------------------------------
// db

function registerDb(program: Command, ctx: CliContext): void {
  const db = program.command('db').description('database: migrations, logical backup and restore of the app tables');

  db.command('migrate')
    .description('apply pending migrations (infra/migrations)')
    .option('--json', 'print JSON')
    .action((opts: { json?: boolean }) =>
      guard(async () => {
        const applied = await migrate(await databaseUrl(ctx));
        if (opts.json) return printJson({ applied });
        print(applied.length ? `Applied ${applied.length} migration(s): ${applied.join(', ')}` : 'Database is up to date: no migrations to apply.');
      }),
    );

  db.command('backup')
    .description('write every app table to a gzip ndjson archive with checksums (plus <file>.sha256)')
    .option('--out <file>', 'archive path (default: DATA_DIR/backups/prospector-<time>.ndjson.gz)')
    .option('--json', 'print JSON')
    .action((opts: { out?: string; json?: boolean }) =>
      guard(async () => {
        const config = await ctx.getConfig();
        const pool = await ctx.getPool();
        const file = opts.out ?? defaultBackupFile(config.dataDir);
        const result = await withProgress('backup', !opts.json, (onProgress) => backupDatabase({ pool, file, onProgress }));
        if (opts.json) return printJson(result);
        print(`Backed up ${result.tables.length} tables, ${result.tables.reduce((n, t) => n + t.rows, 0)} rows to ${result.file} (${formatBytes(result.bytes)}, sha256 ${result.sha256.slice(0, 16)}…)`);
      }),
    );

  db.command('restore <file>')
    .description('replace the app tables with a backup, in one transaction (dry run unless --force)')
    .option('--force', 'really restore (default: check the archive and show what would be replaced)')
    .option('--json', 'print JSON')
    .action((file: string, opts: { force?: boolean; json?: boolean }) =>
      guard(async () => {
        const inspection = await verifyBackup(file);
        const pool = await ctx.getPool();
        if (!opts.force) {
          const now = await currentRowCounts(pool, inspection.tables.map((t) => t.name));
          const tables = inspection.tables.map((t) => ({ name: t.name, backup_rows: t.rows, current_rows: now[t.name] }));
          if (opts.json) return printJson({ dry_run: true, file: inspection.file, created_at: inspection.header.created_at, tables });
          print(`Backup ${inspection.file} is intact (taken ${inspection.header.created_at} from ${inspection.header.database}, PostgreSQL ${inspection.header.server_version}).`);
          print(table(['TABLE', 'ROWS IN BACKUP', 'ROWS NOW'], tables.map((t) => [t.name, t.backup_rows, t.current_rows ?? 'no table yet'])));
          return note('Dry run: nothing changed. Run again with --force to replace these tables with the backup.');
        }
        await migrate(await databaseUrl(ctx));
        const result = await withProgress('restore', !opts.json, (onProgress) => restoreDatabase({ pool, file, onProgress }));
        if (opts.json) return printJson({ dry_run: false, ...result });
        print(`Restored ${result.tables.length} tables, ${result.tables.reduce((n, t) => n + t.rows, 0)} rows from ${result.file}.`);
        if (result.untouched.length) note(`Not in the backup, left as they were: ${result.untouched.join(', ')}`);
      }),
    );
}

async function databaseUrl(ctx: CliContext): Promise<string> {
  await ctx.getPool(); // names the missing DATABASE_URL the same way every command does
  return (await ctx.getConfig()).database.url!;
}

// ---------------------------------------------------------------------------
// shared

async function snapshotDir(ctx: CliContext, opts: DirOpts): Promise<string> {
  const config = await ctx.getConfig();
  return opts.dir ?? config.snapshots.dir ?? defaultSnapshotDir(config.dataDir);
}

/** Library errors become CliErrors with their exit code; the message already names the problem. */
async function guard(work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (err) {
    if (err instanceof CliError) throw err;
    if (err instanceof RetentionPolicyError) throw new CliError(err.message, EXIT.badInput);
    if (err instanceof SnapshotError || err instanceof BackupError) {
      const code = { not_found: EXIT.notFound, corrupt: EXIT.corrupt, invalid: EXIT.badInput, incompatible: EXIT.incompatible }[err.code];
      throw new CliError(err.message, code);
    }
    throw err;
  }
}

function wholeNumber(text: string, flag: string): number {
  if (!/^\d+$/.test(text.trim())) throw new CliError(`${flag} must be a whole number of 0 or more, got "${text}"`, EXIT.badInput);
  return Number(text);
}

function size(text: string, flag: string): number {
  try {
    return parseSize(text);
  } catch (err) {
    throw new CliError(`${flag}: ${(err as Error).message}`, EXIT.badInput);
  }
}

function duration(text: string, flag: string): number {
  try {
    return parseDuration(text);
  } catch (err) {
    throw new CliError(`${flag}: ${(err as Error).message}`, EXIT.badInput);
  }
}

/** A progress bar on stderr while `work` runs, only for a person at a terminal. */
async function withProgress<T>(label: string, enabled: boolean, work: (onProgress: OnProgress) => Promise<T>): Promise<T> {
  if (!enabled || !process.stderr.isTTY) return work(() => undefined);
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% | {value}/{total} rows | {duration_formatted}`, stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  try {
    return await work((p) => {
      if (!started) {
        bar.start(p.total, p.done);
        started = true;
      } else {
        bar.setTotal(p.total);
        bar.update(p.done);
      }
    });
  } finally {
    if (started) bar.stop();
  }
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function when(iso: string): string {
  return iso.slice(0, 19).replace('T', ' ');
}

function table(header: string[], rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map(String));
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i].length)));
  return [header, ...cells].map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

function printJson(value: unknown): void {
  print(JSON.stringify(value, null, 2));
}

/** Hints go to stderr so stdout stays the answer. */
function note(text: string): void {
  process.stderr.write(`${text}\n`);
}
