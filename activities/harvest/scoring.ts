import type { Pool } from '../../lib/store/db.js';
import { scoreSignal, type ScoreWeights } from '../../lib/domain/scoring.js';
import { saveScores, signalsToScore } from '../../lib/store/signals.js';

export interface ScorePageInput {
  /** This run's start (DB time): signals seen or analysed since then are (re)scored. */
  since: string;
  afterId: string;
  limit: number;
  threshold: number;
}

export interface ScorePageResult {
  scored: number;
  qualifying: number;
  /** Where the next page starts; null when this was the last page. */
  lastId: string | null;
}

/**
 * Scores one page of signals with the configured weights (lib/domain/scoring.ts) and
 * stores the scores. Recency decays, so a signal seen again in a later run is
 * scored again with its newer metrics and its age at that time.
 */
export async function scorePage(pool: Pool, weights: ScoreWeights, input: ScorePageInput, nowMs = Date.now()): Promise<ScorePageResult> {
  const rows = await signalsToScore(pool, input.since, input.afterId, input.limit);
  const scores = rows.map((r) => ({ id: r.id, score: scoreSignal(r, nowMs, weights).score }));
  await saveScores(pool, scores);
  return {
    scored: scores.length,
    qualifying: scores.filter((s) => s.score >= input.threshold).length,
    lastId: rows.length < input.limit ? null : rows[rows.length - 1]!.id,
  };
}
