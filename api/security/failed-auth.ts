import type { RateLimit } from '../../lib/config/security.js';
import type { LimitCheck, RateLimits } from './rate-limit.js';

/** Addresses remembered as over budget at once; past this, the expired ones are swept out. */
const MAX_BLOCKED = 10_000;

/**
 * The failed-authentication budget of each client address
 * (RATE_LIMIT_AUTH_FAILURES): every 401 (no, bad, revoked or expired key; a
 * wrong webhook signature) spends a point of the address's shared counter
 * (Redis or PostgreSQL, like every limit). Once the counter is spent, this
 * replica remembers the address until the window ends and refuses its keyed
 * and signed requests with 429 before looking at a key: a flood of bad keys
 * costs no key lookup and no store round trip per request. Requests that
 * authenticate never touch the counter.
 */
export class FailedAuthLimiter {
  /** Address → when its window ends (ms since the epoch). */
  private readonly blocked = new Map<string, number>();

  constructor(
    private readonly limits: RateLimits,
    readonly limit: RateLimit | undefined,
  ) {}

  /** Seconds until the address may try again, when its budget is spent; undefined otherwise. */
  blockedFor(address: string): number | undefined {
    const until = this.blocked.get(address);
    if (until === undefined) return undefined;
    const left = until - Date.now();
    if (left > 0) return Math.max(1, Math.ceil(left / 1000));
    this.blocked.delete(address);
    return undefined;
  }

  /**
   * Spends a point for a failed authentication. `beyond` when this failure
   * was over the budget (answer 429, not 401); `resetS` when the window ends.
   * Throws only when the store and its in-memory stand-in both fail.
   */
  async failed(address: string): Promise<{ beyond: boolean; resetS: number } | undefined> {
    if (!this.limit) return undefined;
    const check: LimitCheck = { name: 'auth-failures', subject: `ip:${address}`, limit: this.limit };
    const outcome = await this.limits.consume([check]);
    if (!outcome) return undefined;
    const { remaining, resetS } = outcome.reported;
    if (!outcome.allowed || remaining === 0) this.block(address, resetS);
    return { beyond: !outcome.allowed, resetS };
  }

  private block(address: string, resetS: number): void {
    if (this.blocked.size >= MAX_BLOCKED) {
      const now = Date.now();
      for (const [a, until] of this.blocked) if (until <= now) this.blocked.delete(a);
      // Still full: the oldest entry goes (its address is counted in the shared store regardless).
      if (this.blocked.size >= MAX_BLOCKED) this.blocked.delete(this.blocked.keys().next().value!);
    }
    this.blocked.set(address, Date.now() + resetS * 1000);
  }
}
