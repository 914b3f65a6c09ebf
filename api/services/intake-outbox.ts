import type pg from 'pg';
import type { Pool } from '../../lib/store/db.js';
import { END_STAGES, type IntakeInput } from '../../lib/domain/prospect.js';

/**
 * The intake outbox (`intake_submissions`), write side: how a submitted lead
 * is stored (with its audit row and first read-model row), and how the
 * dispatchers (api/services/intake-dispatcher.ts) learn that one was.
 */

export const SUBMISSIONS_CHANNEL = 'intake_submissions';

/** One lead, validated and normalised, ready to store. */
export interface QueuedSubmission {
  id: string;
  workflowId: string;
  domain: string;
  keyId: string | null;
  taskQueue: string;
  input: IntakeInput & { submissionId: string; requestedBy: string };
}

type Queryable = Pool | pg.PoolClient;

/**
 * Stores submissions in one statement (atomic without BEGIN/COMMIT, one round
 * trip, one commit): for each, is an intake for that person active or waiting
 * (then it is "attached")? Its outbox row; the first read-model row when
 * nothing is active (replacing a finished intake's row); its audit row.
 * Returns "attached" per submission, in order. Two submissions for one person
 * in one batch: the second is attached to the first. (Two at the same instant
 * in different batches may both be "queued": the dispatcher still makes one
 * workflow of them, the second attaches.)
 *
 * The replaced row keeps `run_started_at` of the finished intake plus 1 ms:
 * a late write of that intake (older start) cannot overwrite it, while the
 * new run (started later) does (lib/store/prospects.ts writeReadModel).
 */
export async function storeSubmissions(db: Queryable, submissions: QueuedSubmission[]): Promise<boolean[]> {
  const seen = new Set<string>();
  const repeated = submissions.map((s) => {
    const again = seen.has(s.workflowId);
    seen.add(s.workflowId);
    return again;
  });
  const column = <T>(pick: (s: QueuedSubmission) => T) => submissions.map(pick);
  const { rows } = await db.query(
    `WITH batch AS (
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bool[])
                WITH ORDINALITY AS b(id, workflow_id, input, domain, requested_by, key_id, task_queue, repeated, ord)
     ), waiting AS (
       SELECT b.*, b.input::jsonb AS lead_input,
              b.repeated
              OR EXISTS (SELECT 1 FROM prospects p WHERE p.id = b.workflow_id AND p.stage <> ALL($9::text[]))
              OR EXISTS (SELECT 1 FROM intake_submissions s WHERE s.workflow_id = b.workflow_id AND s.dispatched_at IS NULL) AS attached
         FROM batch b
     ), outbox AS (
       INSERT INTO intake_submissions (id, workflow_id, input, domain, requested_by, key_id, task_queue)
       SELECT id::uuid, workflow_id, lead_input, domain, requested_by, key_id, task_queue FROM waiting ORDER BY ord
     ), read_model AS (
       INSERT INTO prospects AS p (id, email, domain, name, company, source, stage, approval_state, mode, submission_id, state_seq, data)
       SELECT workflow_id, lead_input->'lead'->>'email', domain, lead_input->'lead'->>'name', lead_input->'lead'->>'company',
              COALESCE(lead_input->'lead'->>'source', 'api'), 'SUBMITTED', 'NONE', COALESCE(lead_input->>'mode', 'draft_only'), id, 0, '{}'::jsonb
         FROM waiting WHERE NOT attached
       ON CONFLICT (id) DO UPDATE SET run_id = NULL, intake_key = NULL, run_started_at = p.run_started_at + interval '1 millisecond',
         email = EXCLUDED.email, domain = EXCLUDED.domain, name = EXCLUDED.name, company = EXCLUDED.company, owner = NULL,
         source = EXCLUDED.source, stage = 'SUBMITTED', approval_state = 'NONE', draft_version = 0, subject = NULL, reason = NULL,
         data = '{}'::jsonb, mode = EXCLUDED.mode, submission_id = EXCLUDED.submission_id, approval_deadline = NULL, state_seq = 0,
         created_at = now(), updated_at = now()
       WHERE p.stage = ANY($9::text[])
     ), audit AS (
       INSERT INTO audit_events (event_key, workflow_id, actor, kind, action, outcome, details)
       SELECT 'submit:' || id, workflow_id, requested_by, 'api', 'submit', CASE WHEN attached THEN 'attached' ELSE 'queued' END,
              jsonb_build_object('source', COALESCE(lead_input->'lead'->>'source', 'api'), 'submissionId', id, 'keyId', key_id, 'mode', lead_input->>'mode')
         FROM waiting
     )
     SELECT attached FROM waiting ORDER BY ord`,
    [
      column((s) => s.id),
      column((s) => s.workflowId),
      column((s) => JSON.stringify(s.input)),
      column((s) => s.domain),
      column((s) => s.input.requestedBy),
      column((s) => s.keyId),
      column((s) => s.taskQueue),
      // The second submission for one person in this batch joins the first (one read-model row each).
      repeated,
      END_STAGES,
    ],
  );
  return rows.map((r) => r.attached as boolean);
}

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

/** Undispatched submissions: how many, and how long the oldest has waited. */
export interface OutboxDepth {
  pending: number;
  oldestAgeSeconds: number;
}

/** The outbox depth, for /metrics (the same for every replica: one table). */
export async function outboxDepth(pool: Pool): Promise<OutboxDepth> {
  const { rows } = await pool.query(
    `SELECT count(*)::int AS pending, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS oldest
       FROM intake_submissions WHERE dispatched_at IS NULL`,
  );
  return { pending: rows[0].pending, oldestAgeSeconds: rows[0].oldest };
}
