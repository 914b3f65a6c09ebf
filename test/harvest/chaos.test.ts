import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { harvestPosts, harvestStack, type HarvestStack } from './helpers.js';

/**
 * Acceptance: with the sandbox failing 15% of X, OpenAI and Slack calls
 * (errors, 429s with Retry-After, dropped connections) plus Slack sometimes
 * applying a post and then failing to answer, one harvest run still stores
 * every signal once, scores all of them, and posts each qualifying signal to
 * Slack exactly once.
 */

const SIGNALS = 400;
const THRESHOLD = 70;

describe('harvest under provider chaos', () => {
  let s: HarvestStack;

  beforeAll(async () => {
    s = await harvestStack();
  });
  afterAll(() => s?.close());

  it('stores every signal once, scores all, and notifies each qualifying signal exactly once', async () => {
    const terms = ['Outboundly', 'PipeNest', 'MailRaven', 'Salesbolt'];
    await s.control.post('/_sandbox/x/generate', { count: SIGNALS, seed: 11, terms, spreadMinutes: 8 * 60 });
    const query = { name: 'chaos', source: 'x' as const, query: terms.join(' OR ') };
    const matching = await s.control.get<{ count: number; tweets: { id: string }[] }>(`/_sandbox/x/tweets?query=${encodeURIComponent(query.query)}`);
    expect(matching.count).toBeGreaterThanOrEqual(SIGNALS);

    await s.control.post('/_sandbox/faults/seed', { seed: 2024 });
    await s.control.addFaults(
      { provider: 'slack', kind: 'apply_then_fail', match: 'chat.postMessage', rate: 0.1 },
      ...(['x', 'openai', 'slack'] as const).map((provider) => ({ provider, kind: 'chaos' as const, rate: 0.15, retryAfterSeconds: 1, delayMs: 300 })),
    );
    let summary;
    try {
      // Pages of 10 so X sees enough calls for its 15% to bite.
      summary = await s.run({ queries: [query], tuning: { notifyThreshold: THRESHOLD, digestMin: 100_000, pageSize: 10 } });
    } finally {
      await s.control.clearFaults();
    }

    // Faults really happened on all three providers.
    const { injected } = await s.control.stats();
    for (const provider of ['x', 'openai', 'slack']) expect(Object.values(injected[provider] ?? {}).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    expect(injected.slack?.apply_then_fail ?? 0).toBeGreaterThan(0);

    // Every signal stored once, analysed and scored.
    const { rows } = await s.db.pool.query(`SELECT id::text, external_id, score::float AS score, analysed_at, notified_at FROM signals`);
    expect(rows).toHaveLength(matching.count);
    expect(new Set(rows.map((r) => r.external_id))).toEqual(new Set(matching.tweets.map((t) => t.id)));
    expect(rows.every((r) => r.analysed_at !== null && r.score !== null)).toBe(true);
    expect(summary.totals.scored).toBe(matching.count);

    // Each qualifying signal posted exactly once, nothing else posted.
    const qualifying = rows.filter((r) => r.score >= THRESHOLD).map((r) => `signal:${r.id}`).sort();
    expect(qualifying.length).toBeGreaterThan(10);
    const posted = (await harvestPosts(s.control)).map((p) => p.metadata!.event_payload.message_key).sort();
    expect(posted).toEqual(qualifying);
    expect(rows.filter((r) => r.notified_at !== null)).toHaveLength(qualifying.length);
    expect(summary.totals.notified.recovered).toBeGreaterThan(0);
  }, 180_000);
});
