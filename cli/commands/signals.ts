import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import type { SignalStats, SignalView } from '../../lib/store/signals.js';
import { CliError, type CliContext } from '../context.js';

/** `prospector signals …`: the best signals, statistics, and exports (ndjson or csv), through the HTTP API. */

const print = (line: string): void => void process.stdout.write(`${line}\n`);
const note = (line: string): void => void process.stderr.write(`${line}\n`);

export const CSV_COLUMNS = [
  'id', 'source', 'external_id', 'url', 'author_handle', 'author_name', 'posted_at', 'category', 'sentiment', 'urgency', 'score',
  'likes', 'reposts', 'replies', 'quotes', 'query_names', 'tags', 'analysed_by', 'notified_at', 'text',
] as const;

export function register(program: Command, ctx: CliContext): void {
  const signals = program.command('signals').description('Harvested signals: top, stats, export');

  signals
    .command('top')
    .description('The highest-scoring signals')
    .option('-n, --limit <n>', 'how many', '10')
    .option('-s, --since <when>', 'posted since: a duration ago (24h, 7d) or an ISO time', '24h')
    .option('-c, --category <list>', 'comma-separated categories, e.g. buying_intent,security')
    .option('--min-score <score>', 'at least this score')
    .option('--json', 'print JSON')
    .action(async (opts: { limit: string; since: string; category?: string; minScore?: string; json?: boolean }) => {
      const params = new URLSearchParams({ limit: opts.limit, since: opts.since });
      if (opts.category) params.set('category', opts.category);
      if (opts.minScore) params.set('min_score', opts.minScore);
      const { items } = await ctx.api<{ items: SignalView[] }>('GET', `/v1/signals/top?${params}`);
      if (opts.json) return print(JSON.stringify(items, null, 2));
      if (items.length === 0) return note(`No scored signals since ${opts.since}.`);
      for (const s of items) {
        const who = s.author.handle ? (s.source === 'x' ? `@${s.author.handle}` : s.author.handle) : s.source;
        print(`${String(s.score?.toFixed(1) ?? '-').padStart(5)}  ${(s.analysis?.category ?? '?').padEnd(13)}  ${who.padEnd(18)}  ${oneLine(s.text, 90)}`);
        if (s.url) print(`${' '.repeat(42)}${s.url}`);
      }
    });

  signals
    .command('stats')
    .description('Counts by category, sentiment, source and analyser; the score distribution; the last run')
    .option('-s, --since <when>', 'only signals posted since (24h, 7d, or an ISO time)')
    .option('--json', 'print JSON')
    .action(async (opts: { since?: string; json?: boolean }) => {
      const stats = await ctx.api<SignalStats & { threshold: number }>('GET', `/v1/signals/stats${opts.since ? `?since=${encodeURIComponent(opts.since)}` : ''}`);
      if (opts.json) return print(JSON.stringify(stats, null, 2));
      print(`signals ${stats.total}: analysed ${stats.analysed}, scored ${stats.scored}, notified ${stats.notified}, ${stats.qualifying} at or above ${stats.threshold}`);
      print(`average score ${stats.averageScore ?? '-'}`);
      print(`by category   ${pairs(stats.byCategory)}`);
      print(`by sentiment  ${pairs(stats.bySentiment)}`);
      print(`by source     ${pairs(stats.bySource)}`);
      print(`by analyser   ${pairs(stats.byAnalyser)}`);
      const max = Math.max(1, ...stats.scoreBuckets.map((b) => b.count));
      for (const b of stats.scoreBuckets) print(`  ${String(b.from).padStart(3)}-${String(b.to).padEnd(3)} ${'#'.repeat(Math.ceil((b.count / max) * 40)).padEnd(40)} ${b.count}`);
      if (stats.lastRun) print(`last run ${stats.lastRun.startedAt} (${stats.lastRun.trigger}) ${stats.lastRun.finishedAt ? 'finished' : 'running'}`);
    });

  signals
    .command('export')
    .description('Export signals as ndjson or csv (to a file with a progress bar, or to stdout)')
    .option('-f, --format <format>', 'ndjson or csv', 'ndjson')
    .option('-o, --out <file>', 'write here instead of stdout')
    .option('--min-score <score>', 'at least this score')
    .option('-c, --category <list>', 'comma-separated categories')
    .option('-q, --query <name>', 'only signals found by this query')
    .option('-s, --since <when>', 'posted since (24h, 7d, or an ISO time)')
    .option('-u, --until <when>', 'posted before')
    .option('--page-size <n>', 'signals per API call', '500')
    .action(async (opts: { format: string; out?: string; minScore?: string; category?: string; query?: string; since?: string; until?: string; pageSize: string }) => {
      if (opts.format !== 'ndjson' && opts.format !== 'csv') throw new CliError(`--format must be ndjson or csv, not "${opts.format}"`);
      const filter = new URLSearchParams({ limit: opts.pageSize });
      if (opts.minScore) filter.set('min_score', opts.minScore);
      if (opts.category) filter.set('category', opts.category);
      if (opts.query) filter.set('query', opts.query);
      if (opts.since) filter.set('since', opts.since);
      if (opts.until) filter.set('until', opts.until);
      const out: WriteStream | NodeJS.WriteStream = opts.out ? createWriteStream(opts.out) : process.stdout;
      const written = await exportSignals(ctx, filter, opts.format, out, Boolean(opts.out));
      if (opts.out) {
        (out as WriteStream).end();
        await once(out, 'close');
        note(`exported ${written} signal(s) to ${opts.out}`);
      }
    });
}

async function exportSignals(ctx: CliContext, filter: URLSearchParams, format: 'ndjson' | 'csv', out: NodeJS.WritableStream, showBar: boolean): Promise<number> {
  const write = async (chunk: string) => {
    if (!out.write(chunk)) await once(out, 'drain');
  };
  if (format === 'csv') await write(`${CSV_COLUMNS.join(',')}\n`);
  let cursor: string | undefined;
  let written = 0;
  let bar: cliProgress.SingleBar | undefined;
  do {
    const params = new URLSearchParams(filter);
    if (cursor) params.set('cursor', cursor);
    else params.set('include_total', 'true');
    const page = await ctx.api<{ items: SignalView[]; nextCursor: string | null; total?: number }>('GET', `/v1/signals?${params}`);
    if (page.total !== undefined && showBar && process.stderr.isTTY) {
      bar = new cliProgress.SingleBar({ stream: process.stderr, format: 'exporting [{bar}] {value}/{total} signals  {eta_formatted} left', hideCursor: true }, cliProgress.Presets.shades_classic);
      bar.start(page.total, 0);
    }
    for (const s of page.items) await write(format === 'csv' ? `${csvRow(s)}\n` : `${JSON.stringify(s)}\n`);
    written += page.items.length;
    bar?.update(written);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  bar?.stop();
  return written;
}

export function csvRow(s: SignalView): string {
  const values: Record<(typeof CSV_COLUMNS)[number], unknown> = {
    id: s.id,
    source: s.source,
    external_id: s.externalId,
    url: s.url,
    author_handle: s.author.handle,
    author_name: s.author.name,
    posted_at: s.postedAt,
    category: s.analysis?.category,
    sentiment: s.analysis?.sentiment,
    urgency: s.analysis?.urgency,
    score: s.score,
    likes: s.metrics.likes,
    reposts: s.metrics.reposts,
    replies: s.metrics.replies,
    quotes: s.metrics.quotes,
    query_names: s.queryNames.join(';'),
    tags: s.analysis?.tags.join(';'),
    analysed_by: s.analysis?.by,
    notified_at: s.notifiedAt,
    text: s.text,
  };
  return CSV_COLUMNS.map((c) => csvField(values[c])).join(',');
}

/** RFC 4180: quote fields with commas, quotes or line breaks; double the quotes. A leading =+-@ is defused for spreadsheets. */
function csvField(value: unknown): string {
  if (value === null || value === undefined) return '';
  let text = String(value);
  if (/^[=+\-@\t\r]/.test(text) && typeof value === 'string') text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function pairs(record: Record<string, number>): string {
  return Object.entries(record)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(', ') || '-';
}
