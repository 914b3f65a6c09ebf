import pg from 'pg';
import type { Client } from '@temporalio/client';
// The SDK's (internal) way to set the start request id: Temporal answers a
// start with a request id it has seen with the run that request made, even
// after that run closed, so starting a row twice never makes a second intake.
// bench/test coverage: test/api/intake-outbox.test.ts "dispatching a row again".
import { InternalWorkflowStartOptionsSymbol } from '@temporalio/client/lib/internal.js';
import type { Pool } from '../../lib/store/db.js';
import type { Logger } from '../../lib/config/logger.js';
import { backOff, claimDue, pruneDispatched, recordDispatched, releaseClaims, startedNotTakenUp, type ClaimedSubmission } from '../../lib/store/outbox.js';
import { startIntake, type IntakeMemo } from './start-intake.js';
import { SUBMISSIONS_CHANNEL, submissionSignal, type SubmissionSignal } from './intake-outbox.js';

/**
 * The intake dispatcher: starts the intakes of submitted leads.
 *
 * POST /v1/prospects and the HubSpot webhook only store a lead in the outbox
 * (`intake_submissions`, see api/services/intake-outbox.ts) and signal it; every API
 * replica runs one dispatcher, which wakes on that signal (in process, and
 * NOTIFY from other replicas) and on a short poll, claims a batch of due
 * rows (`FOR UPDATE SKIP LOCKED`, then a lease in `next_attempt_at`, so two
 * dispatchers never hold the same row), and starts each intake with
 * `startIntake` (deterministic workflow id, USE_EXISTING) with bounded
 * concurrency. The submission id is the start request id and the run's memo:
 * starting a row again lands on the run it made, and the memo tells a run this
 * submission started from one it joined.
 *
 * When Temporal refuses or cannot be reached, the row backs off (exponential,
 * per row) and stays in the outbox: a row is dispatched at least once, never
 * dropped, and dispatching it again is harmless.
 *
 * Pace: no faster than the workers take intakes up (maxBacklog), and slower
 * while this replica's submissions are slow to store (yieldAboveMs): on a
 * small machine the intakes' work competes with the request path, and the
 * outbox is there to hold the difference.
 */

export interface IntakeDispatcherOptions {
  /** Rows claimed per round. */
  batchSize: number;
  /** Temporal starts in flight at once (per replica). */
  concurrency: number;
  /** Poll for due rows (back-offs ending, missed notifications) this often. */
  pollMs: number;
  /** A burst of notifications within this time is one claim. */
  coalesceMs: number;
  /** How long a claimed row is ours; another dispatcher takes it after that (we died). */
  leaseMs: number;
  /** Deadline of one start (and its describe) against Temporal. */
  startTimeoutMs: number;
  /** Back-off after a failed start: initial, doubling per attempt, capped. */
  retryInitialMs: number;
  retryMaxMs: number;
  /** Dispatched rows are deleted after this long (their audit rows stay). */
  retentionMs: number;
  /**
   * Back-pressure: started intakes no worker has taken up yet (started in the
   * last 10 minutes, no read-model row of their run), across all replicas. While
   * that many wait, no more are started: starting faster than the workers take
   * intakes only moves the queue from this table into Temporal, at the cost of
   * Temporal and API capacity. Infinity turns it off.
   */
  maxBacklog: number;
  /** While backed up, how often to look whether the workers took some (so dispatch follows their pace). */
  backlogRecheckMs: number;
  /**
   * Yield to submissions: while at least 20 leads a second are being stored
   * through this replica and their 95th percentile store time is above this,
   * the start rate drops at once to minStartsPerSecond (checked every 250 ms);
   * it grows back by half each quiet second. Starting intakes costs the CPU and
   * database the request path needs on a small machine: leads keep being
   * taken fast, and their intakes start once the burst eases. Infinity turns it off.
   */
  yieldAboveMs: number;
  minStartsPerSecond: number;
}

export const DEFAULT_DISPATCHER_OPTIONS: IntakeDispatcherOptions = {
  batchSize: 50,
  concurrency: 8,
  pollMs: 1_000,
  coalesceMs: 20,
  leaseMs: 60_000,
  startTimeoutMs: 10_000,
  retryInitialMs: 1_000,
  retryMaxMs: 60_000,
  retentionMs: 7 * 86_400_000,
  maxBacklog: 10,
  backlogRecheckMs: 100,
  yieldAboveMs: 10,
  minStartsPerSecond: 1,
};

export interface IntakeDispatcherDeps {
  /** For the dispatcher's own queries. */
  pool: Pool;
  temporal: Client;
  log: Logger;
  /** Wakes this dispatcher when this process stores a lead (default: the signal of `pool`). */
  signal?: SubmissionSignal;
}

type Outcome = 'started' | 'attached';

const PRUNE_EVERY_MS = 3_600_000;
/** How often the dispatcher looks whether submissions are slow (see yieldAboveMs). */
const YIELD_CHECK_MS = 250;

export class IntakeDispatcher {
  private readonly options: IntakeDispatcherOptions;
  private listener: pg.Client | undefined;
  private relisten: NodeJS.Timeout | undefined;
  private poll: NodeJS.Timeout | undefined;
  private pending: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private closed = false;
  private lastPrune = 0;
  private lastWarning = 0;
  private unsubscribe: (() => void) | undefined;
  private backedUpUntil = 0;
  private recheck: NodeJS.Timeout | undefined;
  private readonly signal: SubmissionSignal;
  /** Start-rate limit while yielding to submissions (Infinity: none), its token bucket, and starts since the last adjustment. */
  private rate = Infinity;
  private tokens = 0;
  private refilledAt = performance.now();
  private checkedAt = performance.now();
  private grewAt = performance.now();

  constructor(
    private readonly deps: IntakeDispatcherDeps,
    options: Partial<IntakeDispatcherOptions> = {},
  ) {
    this.options = { ...DEFAULT_DISPATCHER_OPTIONS, ...options };
    this.signal = deps.signal ?? submissionSignal(deps.pool);
  }

  /** Listens for new submissions, polls, and dispatches what is already due. */
  start(): this {
    this.unsubscribe = this.signal.subscribe(() => this.soon());
    void this.listen();
    this.poll = setInterval(() => this.wake(), this.options.pollMs);
    this.poll.unref();
    this.wake();
    return this;
  }

  /** Runs a dispatch round soon (now if idle; right after the current one otherwise). */
  wake(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.drain().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.wake();
      }
    });
  }

  /** Stops taking rows; in-flight starts finish (bounded by their deadline), claimed rows not yet started are released. */
  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
    clearInterval(this.poll);
    clearTimeout(this.pending);
    clearTimeout(this.recheck);
    clearTimeout(this.relisten);
    const listener = this.listener;
    this.listener = undefined;
    await Promise.allSettled([listener?.end(), this.running]);
  }

  /** Claims one batch of due rows (as many as the back-pressure allows) and dispatches it; returns how many rows it claimed. */
  async dispatchOnce(): Promise<number> {
    // While the workers are behind (or we yield), look again every backlogRecheckMs, not on every submission.
    if (Date.now() < this.backedUpUntil) return 0;
    const allowed = this.allowance();
    const room = allowed < 1 ? 0 : Math.min(this.options.batchSize, allowed, this.options.maxBacklog - (await this.backlog()));
    if (room <= 0) {
      this.backedUpUntil = Date.now() + this.options.backlogRecheckMs;
      this.recheck ??= setTimeout(() => {
        this.recheck = undefined;
        this.wake();
      }, this.options.backlogRecheckMs + 1);
      this.recheck.unref();
      return 0;
    }
    const rows = await this.claim(room);
    if (Number.isFinite(this.rate)) this.tokens -= rows.length;
    if (rows.length === 0) return 0;
    let outage: Error | undefined;
    const queue = [...rows];
    const unstarted = () => queue.splice(0).map((r) => r.id);
    const lane = async () => {
      for (let row = queue.shift(); row; row = queue.shift()) {
        if (this.closed) break;
        // Temporal is unreachable: the rest of the batch backs off without each waiting for its own timeout.
        if (outage) await this.fail(row, outage);
        else outage = await this.dispatch(row);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.options.concurrency, rows.length) }, lane));
    const released = unstarted();
    if (released.length > 0) await this.release(released);
    return rows.length;
  }

  // ---- rounds -----------------------------------------------------------------------

  private async drain(): Promise<void> {
    try {
      await this.pruneNow();
      for (;;) {
        const claimed = await this.dispatchOnce();
        // A dispatched row may have made a later submission of the same person due: look again.
        if (claimed === 0 || this.closed) return;
      }
    } catch (err) {
      // PostgreSQL unreachable: the next poll tries again; nothing was lost (rows stay in the table).
      this.warn('intake dispatch round failed; retrying on the next poll', err);
    }
  }

  /** How many intakes may start now (see yieldAboveMs): Infinity unless yielding to submissions. */
  private allowance(): number {
    const now = performance.now();
    if (now - this.checkedAt >= YIELD_CHECK_MS) this.adjust(now);
    if (!Number.isFinite(this.rate)) return Infinity;
    // At most one second's worth saved up: no burst of starts after a pause.
    this.tokens = Math.min(Math.max(this.rate, 1), this.tokens + (this.rate * (now - this.refilledAt)) / 1_000);
    this.refilledAt = now;
    return Math.floor(this.tokens);
  }

  /**
   * Yield at once, come back slowly: while submissions are slow the start rate
   * drops straight to its floor (intakes started in a burst's first seconds
   * would run right in it: halving once a second let ~40 through); each quiet
   * second it grows by half, and unlimited again above 1,000/s.
   */
  private adjust(now: number): void {
    const { count, p95 } = this.signal.recentLatency();
    this.checkedAt = now;
    if (count >= 20 && p95 > this.options.yieldAboveMs) {
      if (!Number.isFinite(this.rate)) {
        // Starts while unlimited drew no tokens: the bucket begins empty now, not in debt.
        this.tokens = 0;
        this.refilledAt = now;
      }
      this.rate = this.options.minStartsPerSecond;
      this.grewAt = now;
    } else if (Number.isFinite(this.rate) && now - this.grewAt >= 1_000) {
      this.rate = this.rate * 1.5 + 1;
      if (this.rate > 1_000) this.rate = Infinity;
      this.grewAt = now;
    }
  }

  /** Started intakes still waiting for a worker (see maxBacklog). */
  private async backlog(): Promise<number> {
    if (!Number.isFinite(this.options.maxBacklog)) return 0;
    return startedNotTakenUp(this.deps.pool);
  }

  private claim(limit: number): Promise<ClaimedSubmission[]> {
    return claimDue(this.deps.pool, limit, this.options.leaseMs);
  }

  /** Starts (or joins) the intake of one row and records it; returns the error when Temporal seems unreachable. */
  private async dispatch(row: ClaimedSubmission): Promise<Error | undefined> {
    let runId: string;
    let outcome: Outcome;
    try {
      ({ runId, outcome } = await this.deps.temporal.connection.withDeadline(Date.now() + this.options.startTimeoutMs, () => this.startRow(row)));
    } catch (err) {
      await this.fail(row, err as Error);
      return isOutage(err) ? (err as Error) : undefined;
    }
    try {
      await this.record(row, runId, outcome);
    } catch (err) {
      // Started but not recorded: the lease runs out and the row is dispatched again, landing on the same run.
      this.warn('recording a dispatched intake failed; it will be dispatched again', err);
    }
    return undefined;
  }

  private async startRow(row: ClaimedSubmission): Promise<{ runId: string; outcome: Outcome }> {
    const { workflowId, runId } = await startIntake(this.deps.temporal, row.input, {
      taskQueue: row.task_queue,
      workflowId: row.workflow_id,
      startOptions: { [InternalWorkflowStartOptionsSymbol]: { requestId: row.id } },
    });
    const description = await this.deps.temporal.workflow.getHandle(workflowId, runId).describe();
    const memo = (description.memo ?? {}) as IntakeMemo;
    return { runId, outcome: memo.submissionId === row.id ? 'started' : 'attached' };
  }

  /**
   * The row is dispatched, with its audit row. The read model is the
   * workflow's to write: until the run's first step has written it, the
   * person's row shows this submission (the prospect_rows view).
   */
  private record(row: ClaimedSubmission, runId: string, outcome: Outcome): Promise<void> {
    return recordDispatched(this.deps.pool, row.id, runId, outcome);
  }

  /** Backs the row off; it stays in the outbox with the reason. */
  private async fail(row: ClaimedSubmission, err: Error): Promise<void> {
    const delay = Math.min(this.options.retryMaxMs, this.options.retryInitialMs * 2 ** Math.min(row.attempts - 1, 20)) * (0.8 + Math.random() * 0.4);
    this.warn('starting an intake failed; the submission waits in the outbox and is retried', err, { submissionId: row.id, attempts: row.attempts, retryInMs: Math.round(delay) });
    await backOff(this.deps.pool, row.id, errorText(err), delay).catch((e: Error) => this.warn('recording a failed dispatch failed; the lease will expire', e));
  }

  /** Claimed but not attempted (closing): due again at once, for any replica. */
  private async release(ids: string[]): Promise<void> {
    await releaseClaims(this.deps.pool, ids).catch(() => undefined);
  }

  private async pruneNow(): Promise<void> {
    if (Date.now() - this.lastPrune < PRUNE_EVERY_MS) return;
    this.lastPrune = Date.now();
    await pruneDispatched(this.deps.pool, this.options.retentionMs).catch((err: Error) => this.warn('pruning dispatched submissions failed', err));
  }

  // ---- wake-ups ------------------------------------------------------------------------

  /** A dedicated connection LISTENing for new submissions; reconnects after losing it (the poll covers the gap). */
  private async listen(): Promise<void> {
    if (this.closed || this.listener) return;
    const client = new pg.Client(this.deps.pool.options as pg.ClientConfig);
    let retried = false;
    const retry = () => {
      if (retried || this.closed) return;
      retried = true;
      if (this.listener === client) this.listener = undefined;
      this.relisten = setTimeout(() => void this.listen(), 2_000);
      this.relisten.unref();
    };
    // Our own process's NOTIFYs arrive too; the in-process signal already woke us, and soon() coalesces.
    client.on('notification', () => this.soon());
    client.on('error', retry);
    client.on('end', retry);
    try {
      await client.connect();
      await client.query(`LISTEN ${SUBMISSIONS_CHANNEL}`);
      if (this.closed) return void client.end().catch(() => undefined);
      this.listener = client;
      this.soon();
    } catch (err) {
      this.warn('listening for intake submissions failed; polling meanwhile', err);
      client.end().catch(() => undefined);
      retry();
    }
  }

  private soon(): void {
    if (this.pending || this.closed) return;
    this.pending = setTimeout(() => {
      this.pending = undefined;
      this.wake();
    }, this.options.coalesceMs);
    this.pending.unref();
  }

  /** At most one warning per 10 s: an outage of Temporal must not flood the log. */
  private warn(message: string, err: unknown, extra: Record<string, unknown> = {}): void {
    if (Date.now() - this.lastWarning < 10_000) return;
    this.lastWarning = Date.now();
    this.deps.log.warn({ err: errorText(err), ...extra }, message);
  }
}

export function startIntakeDispatcher(deps: IntakeDispatcherDeps, options: Partial<IntakeDispatcherOptions> = {}): IntakeDispatcher {
  return new IntakeDispatcher(deps, options).start();
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** gRPC codes meaning "the service is not answering": UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, CANCELLED. */
const OUTAGE_CODES = new Set([1, 4, 8, 14]);

function isOutage(err: unknown): boolean {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'number' && OUTAGE_CODES.has(e.code)) return true;
  }
  return /unavailable|deadline|timed? ?out|ECONNREFUSED|connect/i.test(errorText(err));
}
