import { z } from 'zod';
import { seededRandom } from '../lib/domain/prng.js';
import type { SandboxProviderName } from './types.js';

/**
 * Faults on demand, per provider: plain errors, 429s with Retry-After, hangs
 * (the client's timeout fires), added latency, and "apply then fail" where the
 * effect happens but the answer is an error, which is what proves idempotency.
 * `chaos` picks among error, rate_limit and timeout at random.
 */
export const faultRuleSchema = z.object({
  provider: z.enum(['google', 'hubspot', 'openai', 'slack', 'x']),
  kind: z.enum(['error', 'rate_limit', 'timeout', 'latency', 'apply_then_fail', 'chaos']),
  /** Only requests whose "METHOD /path" contains this text (or matches it as a /regex/). */
  match: z.string().optional(),
  /** Probability per matching request. */
  rate: z.number().min(0).max(1).default(1),
  /** Fire at most this many times, then the rule is spent. */
  count: z.number().int().positive().optional(),
  /** Status for error / apply_then_fail (default 500; chaos mixes 500, 502, 503). */
  status: z.number().int().min(400).max(599).optional(),
  retryAfterSeconds: z.number().int().min(0).default(1),
  /** latency: added delay; timeout: how long to hang before dropping the connection. */
  delayMs: z.number().int().min(0).max(600_000).optional(),
});
export type FaultRuleInput = z.input<typeof faultRuleSchema>;
export type FaultRule = z.output<typeof faultRuleSchema> & { id: number; fired: number };

export type FaultAction =
  | { kind: 'error'; status: number }
  | { kind: 'rate_limit'; retryAfterSeconds: number }
  | { kind: 'timeout'; delayMs: number }
  | { kind: 'apply_then_fail'; status: number };


export class FaultController {
  private rules: FaultRule[] = [];
  private seq = 0;
  private random = seededRandom(42);
  readonly injected: Record<string, Record<string, number>> = {};

  seed(value: number) {
    this.random = seededRandom(value);
  }

  add(input: FaultRuleInput): FaultRule {
    const rule = { ...faultRuleSchema.parse(input), id: ++this.seq, fired: 0 };
    this.rules.push(rule);
    return rule;
  }

  list(): FaultRule[] {
    return this.rules;
  }

  clear(provider?: SandboxProviderName) {
    this.rules = provider ? this.rules.filter((r) => r.provider !== provider) : [];
  }

  /** Decides what (if anything) goes wrong with this request; latency is returned separately. */
  decide(provider: SandboxProviderName, method: string, path: string): { latencyMs: number; action?: FaultAction } {
    const line = `${method.toUpperCase()} ${path}`;
    let latencyMs = 0;
    let action: FaultAction | undefined;
    for (const rule of this.rules) {
      if (rule.provider !== provider || !matches(rule.match, line)) continue;
      if (rule.count !== undefined && rule.fired >= rule.count) continue;
      if (rule.kind !== 'latency' && action) continue;
      if (this.random() >= rule.rate) continue;
      rule.fired++;
      if (rule.kind === 'latency') {
        latencyMs += rule.delayMs ?? 100;
        continue;
      }
      action = this.toAction(rule);
      const count = (this.injected[provider] ??= {});
      count[action.kind] = (count[action.kind] ?? 0) + 1;
    }
    return { latencyMs, action };
  }

  private toAction(rule: FaultRule): FaultAction {
    let kind = rule.kind;
    if (kind === 'chaos') {
      const r = this.random();
      kind = r < 0.5 ? 'error' : r < 0.8 ? 'rate_limit' : 'timeout';
    }
    switch (kind) {
      case 'rate_limit':
        return { kind, retryAfterSeconds: rule.retryAfterSeconds };
      case 'timeout':
        return { kind, delayMs: rule.delayMs ?? 15_000 };
      case 'apply_then_fail':
        return { kind, status: rule.status ?? 500 };
      default:
        return { kind: 'error', status: rule.status ?? [500, 502, 503][Math.floor(this.random() * 3)]! };
    }
  }
}

function matches(pattern: string | undefined, line: string): boolean {
  if (!pattern) return true;
  if (pattern.length > 2 && pattern.startsWith('/') && pattern.endsWith('/')) {
    return new RegExp(pattern.slice(1, -1)).test(line);
  }
  return line.includes(pattern);
}
