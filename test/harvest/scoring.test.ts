import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../lib/config/config.js';
import { DEFAULT_WEIGHTS, loadHarvestConfig } from '../../lib/config/harvest.js';
import { scoreSignal, type ScoreInput } from '../../lib/domain/scoring.js';

/** The score formula against the worked examples in docs/scoring.md, and the weights' settings. */

const NOW = Date.parse('2026-01-01T12:00:00Z');
const hoursAgo = (h: number) => NOW - h * 3_600_000;
const score = (input: ScoreInput, weights = DEFAULT_WEIGHTS) => scoreSignal(input, NOW, weights);

const A: ScoreInput = { likes: 96, reposts: 14, replies: 37, quotes: 4, urgency: 3, category: 'buying_intent', sentiment: 'negative', postedAtMs: hoursAgo(0) };

describe('signal score: worked examples (docs/scoring.md)', () => {
  it('A. fresh buying intent: 76.07 raw, ×1.5 ×1.1 = 125.52, capped at 100', () => {
    const s = score(A);
    expect(s.engagement).toBeCloseTo(54.07, 2);
    expect(s.raw).toBeCloseTo(76.07, 2);
    expect(s.raw * s.categoryBoost * s.sentimentMultiplier).toBeCloseTo(125.52, 2);
    expect(s.score).toBe(100);
  });

  it('B. the same post 48 h later: two half-lives, 31.38', () => {
    const s = score({ ...A, postedAtMs: hoursAgo(48) });
    expect(s.decay).toBe(0.25);
    expect(s.score).toBe(31.38);
  });

  it('C. praise, 12 h old: 21.27', () => {
    expect(score({ likes: 16, reposts: 1, replies: 2, quotes: 0, urgency: 0, category: 'praise', sentiment: 'positive', postedAtMs: hoursAgo(12) }).score).toBe(21.27);
  });

  it('D. viral security incident: 125.46 before the cap, 100 after', () => {
    const s = score({ likes: 520, reposts: 310, replies: 44, quotes: 61, urgency: 5, category: 'security', sentiment: 'negative', postedAtMs: hoursAgo(6) });
    expect(s.engagement).toBeCloseTo(74.33, 2);
    expect(s.raw * s.categoryBoost * s.sentimentMultiplier * s.decay).toBeCloseTo(125.46, 2);
    expect(s.score).toBe(100);
  });

  it('E. feed question without metrics, 2 h old: 11.89', () => {
    expect(score({ likes: 0, reposts: 0, replies: 0, quotes: 0, urgency: 1, category: 'question', sentiment: 'neutral', postedAtMs: hoursAgo(2) }).score).toBe(11.89);
  });

  it('F. older buying intent with little engagement: 26.46', () => {
    expect(score({ likes: 12, reposts: 1, replies: 7, quotes: 0, urgency: 3, category: 'buying_intent', sentiment: 'neutral', postedAtMs: hoursAgo(40) }).score).toBe(26.46);
  });
});

describe('signal score: properties', () => {
  const base: ScoreInput = { likes: 5, reposts: 1, replies: 1, quotes: 0, urgency: 2, category: 'bug', sentiment: 'neutral', postedAtMs: hoursAgo(3) };

  it('never drops when engagement or urgency rises, and halves every half-life', () => {
    expect(score({ ...base, likes: 50 }).score).toBeGreaterThan(score(base).score);
    expect(score({ ...base, quotes: 3 }).score).toBeGreaterThan(score(base).score);
    expect(score({ ...base, urgency: 4 }).score).toBeGreaterThan(score(base).score);
    const fresh = score({ ...base, postedAtMs: NOW });
    const day = score({ ...base, postedAtMs: hoursAgo(24) });
    expect(day.score).toBeCloseTo(fresh.score / 2, 1);
  });

  it('counts negative metrics as zero, a future post as brand new, and stays within 0..100', () => {
    expect(score({ ...base, likes: -100 }).score).toBe(score({ ...base, likes: 0 }).score);
    expect(score({ ...base, postedAtMs: NOW + 5 * 3_600_000 }).score).toBe(score({ ...base, postedAtMs: NOW }).score);
    expect(score({ ...base, urgency: 99 }).urgency).toBe(20);
    const huge = score({ ...base, likes: 1e9, reposts: 1e9, category: 'buying_intent', sentiment: 'negative', postedAtMs: NOW });
    expect(huge.score).toBe(100);
    expect(score({ ...base, postedAtMs: hoursAgo(24 * 365) }).score).toBe(0);
  });

  it('uses the weights from the harvest settings', () => {
    const cfg = loadHarvestConfig({
      env: {
        HARVEST_SCORE_BASE: '0',
        HARVEST_SCORE_WEIGHTS: 'likes=2',
        HARVEST_SCORE_CATEGORY_BOOSTS: 'bug=2',
        HARVEST_SCORE_SENTIMENT: 'neutral=0.5',
        HARVEST_SCORE_HALF_LIFE: '3h',
        HARVEST_SCORE_URGENCY: '0',
      },
    });
    expect(cfg.weights).toMatchObject({ base: 0, likes: 2, reposts: 3, urgency: 0, halfLifeHours: 3 });
    expect(cfg.weights.categoryBoost).toMatchObject({ bug: 2, buying_intent: 1.5 });
    const s = scoreSignal(base, NOW, cfg.weights);
    // 10·ln(1 + 5·2 + 1·3 + 1·2) × 2 × 0.5 × 0.5^(3/3)
    expect(s.score).toBeCloseTo(10 * Math.log(16) * 2 * 0.5 * 0.5, 2);
  });

  it('refuses bad weight settings, naming the setting', () => {
    const bad = (env: Record<string, string>) => {
      try {
        loadHarvestConfig({ env });
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as ConfigError).problems;
      }
      throw new Error('accepted');
    };
    expect(bad({ HARVEST_SCORE_WEIGHTS: 'likes=abc' })[0]!.setting).toBe('HARVEST_SCORE_WEIGHTS');
    expect(bad({ HARVEST_SCORE_CATEGORY_BOOSTS: 'hype=2' })[0]).toMatchObject({ setting: 'HARVEST_SCORE_CATEGORY_BOOSTS' });
    expect(bad({ HARVEST_SCORE_HALF_LIFE: 'soon' })[0]!.setting).toBe('HARVEST_SCORE_HALF_LIFE');
    expect(bad({ HARVEST_NOTIFY_THRESHOLD: '150' })[0]!.setting).toBe('HARVEST_NOTIFY_THRESHOLD');
    expect(bad({ HARVEST_ANALYSIS_BATCH: '5' })[0]!.setting).toBe('HARVEST_ANALYSIS_BATCH');
    expect(bad({ HARVEST_QUERIES: '[{"name":"a","source":"x"}]' })[0]!.setting).toBe('HARVEST_QUERIES');
  });
});
