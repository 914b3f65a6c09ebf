import { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterPostgres, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { asyncCommitPool, type Pool } from '../../lib/store/db.js';
import type { Logger } from '../../lib/config/logger.js';
import type { RateLimit } from '../../lib/config/security.js';
import type { DependencyCheck } from '../readiness.js';

/**
 * Fixed-window counters shared by every API replica: in Redis when REDIS_URL is
 * set, else in PostgreSQL (table api_rate_limits). When the store fails, a
 * per-process memory limiter stands in (rate-limiter-flexible's insurance), so
 * an outage of the store degrades limits instead of failing requests.
 */

export interface LimitCheck {
  /** Counter family, e.g. "route:createProspect" or "key". */
  name: string;
  /** Whose budget: a key id or "ip:<address>". */
  subject: string;
  limit: RateLimit;
}

export interface LimitOutcome {
  allowed: boolean;
  /** The check to report in RateLimit-* headers: the one that denied, else the one with least left. */
  reported: { check: LimitCheck; remaining: number; resetS: number };
}

export type RateLimitBackend = 'redis' | 'postgres';

export class RateLimits {
  private readonly limiters = new Map<string, RateLimiterAbstract>();

  private constructor(
    readonly backend: RateLimitBackend,
    private readonly store: { redis?: Redis; pool: Pool; ownsPool: boolean },
  ) {}

  static async create(options: { redisUrl?: string; pool: Pool; log: Logger }): Promise<RateLimits> {
    // Asynchronous commits: every request bumps the same few rows (one per key and route), and a
    // durable upsert holds its row lock through its WAL flush, so one slow flush stalled every request.
    // A counter lost in a crash costs a few requests of budget, never data.
    if (!options.redisUrl) return new RateLimits('postgres', { pool: asyncCommitPool(options.pool, 4), ownsPool: true });
    const redis = new Redis(options.redisUrl, {
      // Fail fast to the insurance limiter instead of queueing requests behind a dead connection.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2_000,
      retryStrategy: (times) => Math.min(times * 200, 2_000),
    });
    let lastError = 0;
    redis.on('error', (err: Error) => {
      if (Date.now() - lastError < 10_000) return;
      lastError = Date.now();
      options.log.warn({ err: err.message }, 'redis (rate limits) unavailable; using per-process limits');
    });
    // Give the first requests the shared store when Redis is up; never block startup on it.
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(done, 2_000);
      redis.once('ready', done);
    });
    return new RateLimits('redis', { redis, pool: options.pool, ownsPool: false });
  }

  /** Consumes one point from every check; denied when any is exhausted. */
  async consume(checks: LimitCheck[]): Promise<LimitOutcome | undefined> {
    if (checks.length === 0) return undefined;
    const results = await Promise.all(
      checks.map(async (check) => {
        try {
          return { check, res: await this.limiter(check).consume(check.subject), allowed: true };
        } catch (err) {
          if (err instanceof RateLimiterRes) return { check, res: err, allowed: false };
          throw err;
        }
      }),
    );
    const denied = results.filter((r) => !r.allowed).sort((a, b) => b.res.msBeforeNext - a.res.msBeforeNext)[0];
    const tightest = denied ?? [...results].sort((a, b) => a.res.remainingPoints - b.res.remainingPoints)[0]!;
    return {
      allowed: !denied,
      reported: {
        check: tightest.check,
        remaining: Math.max(0, tightest.res.remainingPoints),
        resetS: Math.max(1, Math.ceil(tightest.res.msBeforeNext / 1000)),
      },
    };
  }

  checks(): DependencyCheck[] {
    const redis = this.store.redis;
    if (!redis) return [];
    return [
      {
        name: 'redis',
        label: 'Redis',
        async check() {
          if (redis.status !== 'ready') throw new Error(`connection ${redis.status}`);
          await redis.ping();
        },
      },
    ];
  }

  async close(): Promise<void> {
    await this.store.redis?.quit().catch(() => this.store.redis?.disconnect());
    if (this.store.ownsPool) await this.store.pool.end().catch(() => undefined);
  }

  private limiter(check: LimitCheck): RateLimiterAbstract {
    const id = `${check.name}:${check.limit.points}/${check.limit.durationS}`;
    let limiter = this.limiters.get(id);
    if (limiter) return limiter;
    const common = {
      keyPrefix: `rl:${id}`,
      points: check.limit.points,
      duration: check.limit.durationS,
      // Once a budget is spent, answer from memory until its window ends: a flood
      // of rejected calls does not hammer the store.
      inMemoryBlockOnConsumed: check.limit.points + 1,
      inMemoryBlockDuration: 0,
      insuranceLimiter: new RateLimiterMemory({ points: check.limit.points, duration: check.limit.durationS }),
    };
    limiter = this.store.redis
      ? new RateLimiterRedis({ ...common, storeClient: this.store.redis })
      : new RateLimiterPostgres({ ...common, storeClient: this.store.pool, storeType: 'pool', tableName: 'api_rate_limits', tableCreated: true, clearExpiredByTimeout: false });
    this.limiters.set(id, limiter);
    return limiter;
  }

  /** Deletes counters whose window ended more than an hour ago (PostgreSQL backend only). */
  async prune(): Promise<number> {
    if (this.store.redis) return 0;
    const res = await this.store.pool.query('DELETE FROM api_rate_limits WHERE expire < $1', [Date.now() - 3_600_000]);
    return res.rowCount ?? 0;
  }
}
