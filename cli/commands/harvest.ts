import type { Command } from 'commander';
import type { HarvestScheduleView } from '../../api/services/harvest-schedule.js';
import type { HarvestStatus, HarvestSummary } from '../../lib/domain/harvest.js';
import { CliError, type CliContext } from '../context.js';

/**
 * `prospector harvest …`: run a harvest now, follow it, and control its
 * Temporal Schedule. Everything goes through the HTTP API (scope harvest:write
 * for changes, signals:read for reads).
 */

const print = (line: string): void => void process.stdout.write(`${line}\n`);
const note = (line: string): void => void process.stderr.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface RunView {
  workflowId: string;
  status: string;
  progress: HarvestStatus | null;
  result: HarvestSummary | null;
  failure: string | null;
  temporalUiUrl: string;
}

export function register(program: Command, ctx: CliContext): void {
  const harvest = program.command('harvest').description('Signal harvest: run now, follow a run, control the schedule');

  harvest
    .command('run')
    .description('Start a harvest now (outside the schedule)')
    .option('-q, --query <name...>', 'only these configured queries')
    .option('-w, --wait', 'follow the run until it ends and print its summary')
    .option('--timeout <seconds>', 'with --wait: give up waiting after this long', '900')
    .option('--json', 'print JSON')
    .action(async (opts: { query?: string[]; wait?: boolean; timeout: string; json?: boolean }) => {
      const started = await ctx.api<{ workflowId: string; temporalUiUrl: string }>('POST', '/v1/harvests', opts.query?.length ? { queryNames: opts.query } : {});
      if (!opts.wait) {
        if (opts.json) return print(JSON.stringify(started, null, 2));
        print(started.workflowId);
        return note(`Harvest started. Follow it: prospector harvest status ${started.workflowId}  (Temporal UI: ${started.temporalUiUrl})`);
      }
      const view = await follow(ctx, started.workflowId, Number(opts.timeout) * 1000, !opts.json);
      if (opts.json) return print(JSON.stringify(view, null, 2));
      printRun(view);
      if (view.status !== 'COMPLETED') process.exitCode = 1;
    });

  harvest
    .command('status <workflowId>')
    .description('Status of one run: its stage and counts while running, its summary once done')
    .option('--json', 'print JSON')
    .action(async (workflowId: string, opts: { json?: boolean }) => {
      const view = await ctx.api<RunView>('GET', `/v1/harvests/${encodeURIComponent(workflowId)}`);
      if (opts.json) return print(JSON.stringify(view, null, 2));
      printRun(view);
    });

  harvest
    .command('list')
    .description('Recent runs, newest first')
    .option('-n, --limit <n>', 'how many', '20')
    .option('--json', 'print JSON')
    .action(async (opts: { limit: string; json?: boolean }) => {
      const { items } = await ctx.api<{ items: { workflowId: string; trigger: string; startedAt: string; finishedAt: string | null; summary: Partial<HarvestSummary> }[] }>(
        'GET',
        `/v1/harvests?limit=${encodeURIComponent(opts.limit)}`,
      );
      if (opts.json) return print(JSON.stringify(items, null, 2));
      if (items.length === 0) return note('No harvest runs yet.');
      for (const r of items) {
        const t = r.summary.totals;
        const counts = t ? `fetched ${t.fetched}, new ${t.inserted}, scored ${t.scored}, notified ${t.notified.signals}` : 'running';
        print(`${r.startedAt}  ${r.trigger.padEnd(8)}  ${r.finishedAt ? 'done   ' : 'running'}  ${counts}  ${r.workflowId}`);
      }
    });

  const schedule = harvest.command('schedule').description('The harvest schedule (a Temporal Schedule)');

  const scheduleAction = (name: string, description: string, call: (opts: Record<string, string | undefined>, arg?: string) => Promise<HarvestScheduleView>) =>
    schedule
      .command(name)
      .description(description)
      .option('--json', 'print JSON')
      .action(async (...args: unknown[]) => {
        const cmd = args[args.length - 1] as Command;
        const opts = cmd.opts() as Record<string, string | undefined>;
        const view = await call(opts, typeof args[0] === 'string' ? args[0] : undefined);
        if (opts.json) return print(JSON.stringify(view, null, 2));
        printSchedule(view);
      });

  scheduleAction('show', 'Show state, interval, next and recent runs', () => ctx.api('GET', '/v1/harvests/schedule'));
  scheduleAction('create', 'Create the schedule if it does not exist (the worker also does this at start)', () => ctx.api('POST', '/v1/harvests/schedule'));
  scheduleAction('pause', 'Pause the schedule (a run in progress finishes)', (o) => ctx.api('POST', '/v1/harvests/schedule/pause', o.note ? { note: o.note } : {})).option(
    '--note <text>',
    'why (shown in show and the Temporal UI)',
  );
  scheduleAction('resume', 'Resume a paused schedule', (o) => ctx.api('POST', '/v1/harvests/schedule/resume', o.note ? { note: o.note } : {})).option('--note <text>', 'why');
  scheduleAction('trigger', 'Run the scheduled harvest now', (o) => ctx.api('POST', '/v1/harvests/schedule/trigger', o.overlap ? { overlap: o.overlap.toUpperCase() } : {})).option(
    '--overlap <policy>',
    'if a run is in progress: buffer_one (default, run after it), skip, allow_all, ...',
  );
  scheduleAction('backfill', 'Take the runs the schedule would have taken in a past range', (o) => {
    if (!o.from || !o.to) throw new CliError('backfill needs --from and --to (ISO times, or durations ago such as 2h)');
    return ctx.api('POST', '/v1/harvests/schedule/backfill', { start: when(o.from), end: when(o.to), ...(o.overlap ? { overlap: o.overlap.toUpperCase() } : {}) });
  })
    .option('--from <time>', 'start: an ISO time or a duration ago, e.g. 2h')
    .option('--to <time>', 'end: an ISO time or a duration ago, e.g. 0m', '0m')
    .option('--overlap <policy>', 'buffer_all (default: one run after another), skip, ...');
  scheduleAction('set-interval', 'Change how often the harvest runs, e.g. 15m or 1h', (_o, every) => ctx.api('PATCH', '/v1/harvests/schedule', { interval: every })).argument(
    '<every>',
    'a duration such as 15m, 1h',
  );
}

/** "2h" → two hours ago (ISO); an ISO time passes through. */
function when(value: string): string {
  const rel = value.match(/^(\d+)(s|m|h|d)$/);
  if (rel) return new Date(Date.now() - Number(rel[1]) * { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 's']).toISOString();
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new CliError(`not a time: "${value}" (use an ISO time or a duration ago such as 2h)`);
  return new Date(t).toISOString();
}

async function follow(ctx: CliContext, workflowId: string, timeoutMs: number, showProgress: boolean): Promise<RunView> {
  const deadline = Date.now() + timeoutMs;
  let lastLine = '';
  for (;;) {
    const view = await ctx.api<RunView>('GET', `/v1/harvests/${encodeURIComponent(workflowId)}`);
    if (view.status !== 'RUNNING') return view;
    const p = view.progress;
    const line = p ? `  ${p.stage.padEnd(8)} fetched ${p.totals.fetched}, new ${p.totals.inserted}, analysed ${p.totals.analysed.llm + p.totals.analysed.keywords}, scored ${p.totals.scored}` : '  starting';
    if (showProgress && line !== lastLine) note(line);
    lastLine = line;
    if (Date.now() > deadline) throw new CliError(`still running after ${timeoutMs / 1000}s; follow it with: prospector harvest status ${workflowId}`);
    await sleep(1_000);
  }
}

function printRun(view: RunView) {
  print(`${view.workflowId}: ${view.status}`);
  if (view.progress) print(`  stage ${view.progress.stage}; fetched ${view.progress.totals.fetched}, new ${view.progress.totals.inserted}, scored ${view.progress.totals.scored}`);
  if (view.failure) print(`  failed: ${view.failure}`);
  const s = view.result;
  if (s) {
    const t = s.totals;
    for (const q of s.queries) {
      const extra = q.stoppedBy === 'complete' ? '' : ` (stopped: ${q.stoppedBy}${q.resetAt ? `, budget back at ${q.resetAt}` : ''}${q.error ? `: ${q.error}` : ''})`;
      print(`  query ${q.name} [${q.source}]: ${q.pages} page(s), ${q.fetched} fetched, ${q.inserted} new, ${q.updated} updated${extra}`);
    }
    print(`  analysed ${t.analysed.llm} by the LLM in ${t.analysed.llmCalls} call(s), ${t.analysed.keywords} by keywords`);
    print(`  scored ${t.scored}; ${t.qualifying} at or above the threshold`);
    print(`  notified ${t.notified.signals} signal(s) in ${t.notified.messages} Slack message(s)`);
    if (t.intakes.started || t.intakes.skipped) print(`  intakes started ${t.intakes.started}, already running ${t.intakes.skipped}`);
  }
  print(`  ${view.temporalUiUrl}`);
}

function printSchedule(v: HarvestScheduleView) {
  const every = v.intervalMs === null ? 'custom spec' : v.intervalMs % 3_600_000 === 0 ? `${v.intervalMs / 3_600_000}h` : `${Math.round(v.intervalMs / 60_000)}m`;
  print(`schedule ${v.id}: ${v.paused ? 'PAUSED' : 'active'}, every ${every}, overlap ${v.overlap}, task queue ${v.taskQueue}`);
  if (v.note) print(`  note: ${v.note}`);
  print(`  runs so far ${v.actionsTaken} (skipped for overlap ${v.skippedOverlap}, missed ${v.missedCatchup})`);
  if (v.running.length) print(`  running: ${v.running.map((r) => r.workflowId).join(', ')}`);
  if (!v.paused && v.nextRuns.length) print(`  next: ${v.nextRuns.slice(0, 3).join(', ')}`);
  for (const r of v.recentRuns.slice(-5)) print(`  recent: ${r.takenAt}  ${r.workflowId}`);
}
