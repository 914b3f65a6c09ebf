import type { Pool } from '../../lib/store/db.js';
import type { Logger } from '../../lib/config/logger.js';
import { recordKeysUsed } from '../../lib/store/api-keys.js';
import { insertAuthAudit, type AuthAuditRow } from '../../lib/store/auth-audit.js';

export { DECISIONS, type AuthAuditRow, type Decision } from '../../lib/store/auth-audit.js';

/** Refusals of one address on one route are summed into one row per this period. */
const REFUSED_SUMMARY_MS = 60_000;
/** Addresses × routes counted at once; past this, the oldest counts are written early. */
const MAX_REFUSED_ENTRIES = 10_000;

/**
 * Writes one row per auth decision without putting a database round trip on
 * the request path: rows are queued and inserted in batches (one statement per
 * batch, plus one last_used_at update). close() drains the queue, so a normal
 * shutdown loses nothing; a failed insert is retried on the next tick.
 */
export class AuthAuditWriter {
  private queue: AuthAuditRow[] = [];
  private timer: NodeJS.Timeout;
  private flushing: Promise<void> | undefined;
  private closed = false;
  private dropped = 0;
  private lastWarning = 0;
  /** Refusals counted since their row was last written, by address and route. */
  private refusedCounts = new Map<string, { row: AuthAuditRow; count: number; since: number }>();

  constructor(
    private readonly pool: Pool,
    private readonly log: Logger,
    private readonly options: { flushIntervalMs: number; batchSize: number; maxQueue: number },
  ) {
    this.timer = setInterval(() => {
      this.summarise(false);
      void this.flush().catch(() => undefined);
    }, options.flushIntervalMs);
    this.timer.unref();
  }

  record(row: AuthAuditRow): void {
    this.queue.push(row);
    if (this.queue.length > this.options.maxQueue) {
      // The database has been unreachable for a long time: keep memory bounded and say so.
      const excess = this.queue.length - this.options.maxQueue;
      this.queue.splice(0, excess);
      this.dropped += excess;
      this.log.error({ dropped: this.dropped }, 'auth audit queue full; oldest rows dropped');
    }
    if (this.closed) void this.flush().catch(() => undefined);
    else if (this.queue.length >= this.options.batchSize) void this.flush().catch(() => undefined);
  }

  /**
   * A request refused because its address spent its failed-auth budget. A
   * flood of them must not become a flood of rows: the first refusal of an
   * address on a route is written as it happens, the ones after it are counted
   * and written as one row (`attempts`) per minute while they go on.
   */
  refused(row: AuthAuditRow): void {
    const key = `${row.clientIp ?? ''} ${row.route}`;
    const entry = this.refusedCounts.get(key);
    if (entry) {
      entry.count += 1;
      entry.row.at = row.at;
      return;
    }
    this.record(row);
    this.refusedCounts.set(key, { row: { ...row, requestId: null, traceId: null }, count: 0, since: Date.now() });
    if (this.refusedCounts.size > MAX_REFUSED_ENTRIES) this.summarise(false, this.refusedCounts.size - MAX_REFUSED_ENTRIES);
  }

  get pending(): number {
    return this.queue.length;
  }

  /** Queues the counted refusals as rows: those counted for a full period, or all of them; or the `oldest` n at least. */
  private summarise(all: boolean, oldest = 0): void {
    const now = Date.now();
    for (const [key, entry] of this.refusedCounts) {
      if (!all && oldest <= 0 && now - entry.since < REFUSED_SUMMARY_MS) continue;
      oldest -= 1;
      this.refusedCounts.delete(key);
      if (entry.count > 0) this.record({ ...entry.row, attempts: entry.count });
    }
  }

  /** Writes everything queued so far (one batch at a time); with `summaries`, the refusals counted so far too. */
  flush(options: { summaries?: boolean } = {}): Promise<void> {
    if (options.summaries) this.summarise(true);
    if (this.flushing) return this.flushing.then(() => (this.queue.length > 0 ? this.flush() : undefined));
    if (this.queue.length === 0) return Promise.resolve();
    this.flushing = this.drain().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  /** Stops the timer and writes what is left, retrying for up to `timeoutMs`. */
  async close(timeoutMs = 10_000): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.summarise(true);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.flush();
        if (this.queue.length === 0) return;
      } catch (err) {
        if (Date.now() > deadline || /after calling end/.test((err as Error).message)) {
          this.log.error({ lost: this.queue.length, err: (err as Error).message }, 'auth audit rows could not be written before shutdown');
          return;
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.options.batchSize);
      try {
        await this.insert(batch);
      } catch (err) {
        this.queue.unshift(...batch);
        if (Date.now() - this.lastWarning > 10_000) {
          this.lastWarning = Date.now();
          this.log.warn({ pending: this.queue.length, err: (err as Error).message }, 'auth audit insert failed; will retry');
        }
        throw err;
      }
    }
  }

  private async insert(rows: AuthAuditRow[]): Promise<void> {
    await insertAuthAudit(this.pool, rows);
    const lastUse = new Map<string, Date>();
    for (const r of rows) {
      if (r.decision !== 'allow' || !r.keyId) continue;
      const seen = lastUse.get(r.keyId);
      if (!seen || seen < r.at) lastUse.set(r.keyId, r.at);
    }
    if (lastUse.size === 0) return;
    // Best effort: last use is informative, never worth failing (and retrying) the audit batch for.
    await recordKeysUsed(this.pool, lastUse).catch((err: Error) => this.log.debug({ err: err.message }, 'last_used_at update failed'));
  }
}
