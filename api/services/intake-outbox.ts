import type { Pool } from '../../lib/store/db.js';
import { storeSubmissions, type QueuedSubmission } from '../../lib/store/outbox.js';

/**
 * The intake outbox, write side: how submitted leads reach the table
 * (lib/store/outbox.ts) together, and how the dispatchers
 * (api/services/intake-dispatcher.ts) learn that one was.
 *
 * The outbox is ours, not a job queue such as pg-boss. pg-boss 10.4 (11 and
 * later need Node 22) can enqueue in the caller's transaction, but a lead with
 * its audit row then costs BEGIN, several statements and COMMIT per request
 * instead of one statement, with no group commit: 1,000 leads one by one took
 * 2.6 s against 1.8 s, and at 200 leads/s open loop (fsync on, 2 cores) p99
 * was 19–22 ms against 8–11 ms here. What it would add the dispatcher does
 * already (SKIP LOCKED claims, per-row back-off, one start per person at a
 * time), while the "attached" answer, the cap on started intakes no worker
 * has taken and the yield to slow submissions would stay ours; and its
 * workers poll (0.5 s at the least) where the dispatcher wakes on the commit.
 */

export const SUBMISSIONS_CHANNEL = 'intake_submissions';

interface Pending {
  submission: QueuedSubmission;
  resolve(attached: boolean): void;
  reject(err: unknown): void;
}

/**
 * Group commit for submissions: a lead is written at once when no write is in
 * flight; leads arriving meanwhile wait for it and go together in the next
 * statement. Each answer still waits for its own durable commit, but under
 * load there is one commit (one WAL flush) per batch instead of one per lead:
 * PostgreSQL's flushes were the request path's bottleneck at 200 leads/s
 * (measured on the 2-core bench, shared with the workers' commits).
 */
export class OutboxWriter {
  private queue: Pending[] = [];
  private inFlight = 0;

  constructor(
    private readonly pool: Pool,
    private readonly options: { maxBatch: number; maxInFlight: number } = { maxBatch: 100, maxInFlight: 2 },
  ) {}

  write(submission: QueuedSubmission): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.queue.push({ submission, resolve, reject });
      this.next();
    });
  }

  private next(): void {
    while (this.inFlight < this.options.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.options.maxBatch);
      this.inFlight++;
      void this.store(batch).finally(() => {
        this.inFlight--;
        this.next();
      });
    }
  }

  private async store(batch: Pending[]): Promise<void> {
    try {
      const attached = await storeSubmissions(this.pool, batch.map((p) => p.submission));
      batch.forEach((p, i) => p.resolve(attached[i]!));
    } catch (err) {
      if (batch.length === 1) return batch[0]!.reject(err);
      // One lead must not fail the others: each alone (the statement was all or nothing).
      await Promise.all(batch.map((p) => this.store([p])));
    }
  }
}

/** One `T` per pool: routes and dispatcher of one process meet on it without wiring. */
function perPool<T>(make: (pool: Pool) => T): (pool: Pool) => T {
  const made = new WeakMap<Pool, T>();
  return (pool) => {
    if (!made.has(pool)) made.set(pool, make(pool));
    return made.get(pool)!;
  };
}

/** The writer of a pool (one per pool: the batches of one API process). */
export const outboxWriter = perPool((pool) => new OutboxWriter(pool));

/**
 * "A lead was stored", after its commit: wakes the dispatchers of this
 * process at once and, coalesced to one NOTIFY per `coalesceMs`, those of the
 * other replicas.
 *
 * Why not NOTIFY inside the submitting transaction: PostgreSQL serialises the
 * commits of all notifying transactions on one lock held through the WAL
 * flush, so at 200 submissions/s every submission queued behind the others'
 * flushes (measured: most of the request time waiting on that lock). A lost
 * signal (crash right after commit) costs at most one poll interval.
 */
export class SubmissionSignal {
  private readonly listeners = new Set<() => void>();
  private pending: NodeJS.Timeout | undefined;
  /** Latency of the submissions stored in the last second, oldest first (the dispatchers yield to them). */
  private readonly recent: { at: number; ms: number }[] = [];

  constructor(
    private readonly pool: Pool,
    private readonly coalesceMs = 20,
  ) {}

  /** A lead was stored (committed), `latencyMs` after its request began to store it. */
  submitted(latencyMs?: number): void {
    if (latencyMs !== undefined) {
      this.recent.push({ at: performance.now(), ms: latencyMs });
      this.trim();
    }
    for (const wake of this.listeners) wake();
    if (this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = undefined;
      // Best effort: the other replicas' polls find the rows anyway.
      this.pool.query('SELECT pg_notify($1, $2)', [SUBMISSIONS_CHANNEL, String(process.pid)]).catch(() => undefined);
    }, this.coalesceMs);
    this.pending.unref();
  }

  /** How many leads were stored in the last second, and the 95th percentile of their store latency. */
  recentLatency(): { count: number; p95: number } {
    this.trim();
    if (this.recent.length === 0) return { count: 0, p95: 0 };
    const sorted = this.recent.map((r) => r.ms).sort((a, b) => a - b);
    return { count: sorted.length, p95: sorted[Math.ceil(0.95 * sorted.length) - 1]! };
  }

  private trim(): void {
    const since = performance.now() - 1_000;
    let drop = 0;
    while (drop < this.recent.length && this.recent[drop]!.at < since) drop++;
    if (this.recent.length - drop > 10_000) drop = this.recent.length - 10_000;
    if (drop > 0) this.recent.splice(0, drop);
  }

  /** Calls `wake` on every submission through this pool (in this process); returns the unsubscribe. */
  subscribe(wake: () => void): () => void {
    this.listeners.add(wake);
    return () => void this.listeners.delete(wake);
  }
}

/** The signal of the API pool that submissions are written through. */
export const submissionSignal = perPool((pool) => new SubmissionSignal(pool));
