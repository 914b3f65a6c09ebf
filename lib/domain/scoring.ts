/**
 * The signal score, 0–100 (docs/scoring.md has the formula with worked examples):
 *
 *   raw   = base + engagementScale·ln(1 + likes·wL + reposts·wR + replies·wP + quotes·wQ) + urgencyWeight·urgency
 *   score = min(cap, raw × categoryBoost[category] × sentimentMultiplier[sentiment] × 0.5^(age_h / halfLifeHours))
 *
 * Pure: no I/O, no clock of its own (the caller passes `now`), so tests and
 * the docs' examples agree to the cent.
 */

/** What a signal is about and how it sounds, as the analysis step classifies it. */
export const CATEGORIES = ['buying_intent', 'outage', 'security', 'bug', 'question', 'praise', 'other'] as const;
export const SENTIMENTS = ['positive', 'neutral', 'negative'] as const;
export type Category = (typeof CATEGORIES)[number];
export type Sentiment = (typeof SENTIMENTS)[number];

export interface ScoreWeights {
  base: number;
  engagementScale: number;
  likes: number;
  reposts: number;
  replies: number;
  quotes: number;
  urgency: number;
  halfLifeHours: number;
  cap: number;
  categoryBoost: Record<Category, number>;
  sentimentMultiplier: Record<Sentiment, number>;
}

export interface ScoreInput {
  likes: number;
  reposts: number;
  replies: number;
  quotes: number;
  /** 0–5 from the analysis. */
  urgency: number;
  category: Category;
  sentiment: Sentiment;
  /** When the signal was posted (ms since epoch). */
  postedAtMs: number;
}

export interface ScoreBreakdown {
  engagement: number;
  urgency: number;
  raw: number;
  categoryBoost: number;
  sentimentMultiplier: number;
  ageHours: number;
  decay: number;
  /** Rounded to 2 decimals (the column is numeric(6,2)). */
  score: number;
}

export function scoreSignal(input: ScoreInput, nowMs: number, w: ScoreWeights): ScoreBreakdown {
  const interactions =
    nonNegative(input.likes) * w.likes + nonNegative(input.reposts) * w.reposts + nonNegative(input.replies) * w.replies + nonNegative(input.quotes) * w.quotes;
  const engagement = w.engagementScale * Math.log(1 + interactions);
  const urgency = w.urgency * Math.min(5, nonNegative(input.urgency));
  const raw = w.base + engagement + urgency;
  const categoryBoost = w.categoryBoost[input.category] ?? w.categoryBoost.other;
  const sentimentMultiplier = w.sentimentMultiplier[input.sentiment] ?? 1;
  // A post dated in the future (clock skew) counts as brand new, never as a bonus.
  const ageHours = Math.max(0, (nowMs - input.postedAtMs) / 3_600_000);
  const decay = w.halfLifeHours > 0 ? 0.5 ** (ageHours / w.halfLifeHours) : 1;
  const score = round2(Math.min(w.cap, Math.max(0, raw * categoryBoost * sentimentMultiplier * decay)));
  return { engagement, urgency, raw, categoryBoost, sentimentMultiplier, ageHours, decay, score };
}

function nonNegative(n: number): number {
  return Number.isFinite(n) && n > 0 ? n : 0;
}

export function round2(n: number): number {
  return Math.round(n * 100) / 100;
}
