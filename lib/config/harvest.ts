import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { z } from 'zod';
import { boolSetting, ConfigError, durationSetting, gatherProblems, problemsOf, readSettings, type RawSettings, type SettingProblem, type SettingsSource } from './settings.js';
import { TASK_QUEUES } from '../domain/search-attributes.js';
import { CATEGORIES, SENTIMENTS, type Category, type ScoreWeights } from '../domain/scoring.js';
import type { HarvestTuning } from '../domain/harvest.js';

/**
 * Settings of the signal harvest and its scoring, named by their environment
 * variable (HARVEST_*), validated with zod. This module owns their rules so the
 * harvest can grow its knobs without touching the process-wide settings;
 * lib/config/config.ts composes them into the one configuration, read from the
 * environment and the config file alike. Everything has a default; a bad value
 * fails fast naming the setting.
 */

/** One configured search: an X recent-search query or an RSS/Atom feed URL. */
export const sourceQuerySchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/i, 'expected a name of letters, digits, "_", "-" or "." (max 63)'),
    source: z.enum(['x', 'feed']),
    query: z.string().min(1).max(512).optional(),
    url: z.url().optional(),
    /** Start a prospect intake for qualifying signals of this query whose author is a known contact. */
    startIntake: z.boolean().default(false),
    enabled: z.boolean().default(true),
    /** Page cap for this query per run (default HARVEST_MAX_PAGES). */
    maxPages: z.number().int().min(1).max(1000).optional(),
  })
  .refine((q) => (q.source === 'x' ? Boolean(q.query) : Boolean(q.url)), { message: 'an x query needs "query"; a feed needs "url"' });
export type SourceQueryConfig = z.output<typeof sourceQuerySchema>;

/** The fixture-friendly default: competitor pain and brand mentions on X. */
export const DEFAULT_QUERIES: SourceQueryConfig[] = [
  { name: 'competitor-pain', source: 'x', query: '(Outboundly OR PipeNest OR MailRaven OR Salesbolt) -is:retweet', startIntake: false, enabled: true },
  { name: 'brand', source: 'x', query: 'Prospector -is:retweet', startIntake: false, enabled: true },
];

export const DEFAULT_WEIGHTS: ScoreWeights = {
  base: 10,
  engagementScale: 10,
  likes: 1,
  reposts: 3,
  replies: 2,
  quotes: 2.5,
  urgency: 4,
  halfLifeHours: 24,
  cap: 100,
  categoryBoost: { buying_intent: 1.5, security: 1.3, outage: 1.2, bug: 1.0, question: 0.9, praise: 0.8, other: 0.6 },
  sentimentMultiplier: { negative: 1.1, neutral: 1.0, positive: 0.9 },
};

const duration = (fallback: string) => durationSetting(fallback);
const int = (fallback: number, min: number, max: number) => z.coerce.number({ error: 'expected a number' }).int('expected a whole number').min(min).max(max).default(fallback);
const num = (fallback: number, min: number, max: number) => z.coerce.number({ error: 'expected a number' }).min(min).max(max).default(fallback);
const bool = boolSetting;

/** "a=1,b=2.5" → {a:1, b:2.5}, keys limited to `keys`, values ≥ 0. */
function weightMap<K extends string>(keys: readonly K[]) {
  return z
    .string()
    .optional()
    .transform((value, ctx) => {
      const out: Partial<Record<K, number>> = {};
      for (const part of (value ?? '').split(',').map((p) => p.trim()).filter(Boolean)) {
        const [key, raw] = part.split('=').map((s) => s.trim());
        const n = Number(raw);
        if (!keys.includes(key as K) || raw === undefined || !Number.isFinite(n) || n < 0) {
          ctx.addIssue({ code: 'custom', message: `expected name=number pairs with names from ${keys.join(', ')}, got "${part}"` });
          return z.NEVER;
        }
        out[key as K] = n;
      }
      return out;
    });
}

export const harvestSettingsSchema = z.object({
  HARVEST_QUERIES: z.string().optional(),
  HARVEST_QUERIES_FILE: z.string().optional(),
  HARVEST_TASK_QUEUE: z.string().min(1).default(TASK_QUEUES.harvest),
  HARVEST_SCHEDULE_ID: z.string().regex(/^[\w.-]{1,100}$/, 'expected letters, digits, "_", "-" or "."').default('signal-harvest'),
  HARVEST_INTERVAL: duration('15m'),
  HARVEST_SCHEDULE_ENABLED: bool(true),
  HARVEST_SCHEDULE_PAUSED: bool(false),
  HARVEST_SLACK_CHANNEL: z.string().min(1).default('#signals'),
  HARVEST_NOTIFY_THRESHOLD: num(60, 0, 100),
  HARVEST_DIGEST_MIN: int(4, 1, 100_000),
  HARVEST_DIGEST_LIST: int(15, 1, 40),
  HARVEST_INTAKE_THRESHOLD: num(70, 0, 100),
  HARVEST_INTAKE_CATEGORIES: z
    .string()
    .default('buying_intent')
    .transform((value, ctx) => {
      const categories = value.split(',').map((c) => c.trim()).filter(Boolean);
      const unknown = categories.filter((c) => !(CATEGORIES as readonly string[]).includes(c));
      if (unknown.length) {
        ctx.addIssue({ code: 'custom', message: `unknown categories ${unknown.join(', ')} (known: ${CATEGORIES.join(', ')})` });
        return z.NEVER;
      }
      return categories as Category[];
    }),
  HARVEST_INTAKE_MAX_PER_RUN: int(10, 0, 500),
  HARVEST_INTAKE_TASK_QUEUE: z.string().min(1).default(TASK_QUEUES.prospecting),
  HARVEST_PAGE_SIZE: int(100, 10, 100),
  HARVEST_MAX_PAGES: int(200, 1, 1000),
  HARVEST_RATE_LIMIT_MAX_WAIT: duration('60s'),
  HARVEST_ANALYSIS_BATCH: int(25, 20, 100),
  HARVEST_ANALYSIS_CONCURRENCY: int(4, 1, 32),
  HARVEST_CHUNK_SIZE: int(1000, 20, 10_000),
  HARVEST_CHILD_CONCURRENCY: int(2, 1, 16),
  HARVEST_LLM_ATTEMPTS: int(4, 1, 10),
  HARVEST_LLM_BACKOFF: duration('1s'),
  HARVEST_RETRY_BACKOFF: duration('1s'),
  HARVEST_SCORE_BASE: num(DEFAULT_WEIGHTS.base, 0, 100),
  HARVEST_SCORE_ENGAGEMENT_SCALE: num(DEFAULT_WEIGHTS.engagementScale, 0, 100),
  HARVEST_SCORE_WEIGHTS: weightMap(['likes', 'reposts', 'replies', 'quotes'] as const),
  HARVEST_SCORE_URGENCY: num(DEFAULT_WEIGHTS.urgency, 0, 50),
  HARVEST_SCORE_HALF_LIFE: duration(`${DEFAULT_WEIGHTS.halfLifeHours}h`),
  HARVEST_SCORE_CATEGORY_BOOSTS: weightMap(CATEGORIES),
  HARVEST_SCORE_SENTIMENT: weightMap(SENTIMENTS),
});

export type { HarvestTuning };


export interface HarvestConfig {
  queries: SourceQueryConfig[];
  taskQueue: string;
  schedule: { id: string; intervalMs: number; enabled: boolean; startPaused: boolean };
  slackChannel: string;
  tuning: HarvestTuning;
  weights: ScoreWeights;
}

/** The harvest settings from the environment and the config file (callers with a loaded Config use `config.harvest`). */
export function loadHarvestConfig(options: SettingsSource = {}): HarvestConfig {
  return harvestConfigFrom(readSettings(Object.keys(harvestSettingsSchema.shape), options));
}

/** The harvest configuration from raw settings; throws a ConfigError naming every bad one. */
export function harvestConfigFrom(raw: RawSettings): HarvestConfig {
  const problems: SettingProblem[] = [];
  const parsed = harvestSettingsSchema.safeParse(raw);
  if (!parsed.success) problems.push(...problemsOf(parsed.error, raw));
  // The query list is read apart from the schema (it may name a file); its problems are reported with the others.
  const queries = gatherProblems(problems, () => readQueries(raw.HARVEST_QUERIES, raw.HARVEST_QUERIES_FILE));
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);
  const s = parsed.data;
  return {
    queries: queries!,
    taskQueue: s.HARVEST_TASK_QUEUE,
    schedule: { id: s.HARVEST_SCHEDULE_ID, intervalMs: s.HARVEST_INTERVAL, enabled: s.HARVEST_SCHEDULE_ENABLED, startPaused: s.HARVEST_SCHEDULE_PAUSED },
    slackChannel: s.HARVEST_SLACK_CHANNEL,
    tuning: {
      pageSize: s.HARVEST_PAGE_SIZE,
      maxPages: s.HARVEST_MAX_PAGES,
      rateLimitMaxWaitMs: s.HARVEST_RATE_LIMIT_MAX_WAIT,
      batchSize: s.HARVEST_ANALYSIS_BATCH,
      analysisConcurrency: s.HARVEST_ANALYSIS_CONCURRENCY,
      chunkSize: s.HARVEST_CHUNK_SIZE,
      childConcurrency: s.HARVEST_CHILD_CONCURRENCY,
      llmAttempts: s.HARVEST_LLM_ATTEMPTS,
      llmBackoffMs: s.HARVEST_LLM_BACKOFF,
      retryBackoffMs: s.HARVEST_RETRY_BACKOFF,
      notifyThreshold: s.HARVEST_NOTIFY_THRESHOLD,
      digestMin: s.HARVEST_DIGEST_MIN,
      digestList: s.HARVEST_DIGEST_LIST,
      intakeThreshold: s.HARVEST_INTAKE_THRESHOLD,
      intakeCategories: s.HARVEST_INTAKE_CATEGORIES,
      intakeMaxPerRun: s.HARVEST_INTAKE_MAX_PER_RUN,
      intakeTaskQueue: s.HARVEST_INTAKE_TASK_QUEUE,
      maxHistoryEvents: 8_000,
    },
    weights: {
      ...DEFAULT_WEIGHTS,
      base: s.HARVEST_SCORE_BASE,
      engagementScale: s.HARVEST_SCORE_ENGAGEMENT_SCALE,
      ...s.HARVEST_SCORE_WEIGHTS,
      urgency: s.HARVEST_SCORE_URGENCY,
      halfLifeHours: s.HARVEST_SCORE_HALF_LIFE / 3_600_000,
      categoryBoost: { ...DEFAULT_WEIGHTS.categoryBoost, ...s.HARVEST_SCORE_CATEGORY_BOOSTS },
      sentimentMultiplier: { ...DEFAULT_WEIGHTS.sentimentMultiplier, ...s.HARVEST_SCORE_SENTIMENT },
    },
  };
}

/** HARVEST_QUERIES holds JSON or YAML (a list); HARVEST_QUERIES_FILE names a file with the same. */
function readQueries(inline: string | undefined, file: string | undefined): SourceQueryConfig[] {
  let text = inline;
  let setting = 'HARVEST_QUERIES';
  if (!text && file) {
    setting = 'HARVEST_QUERIES_FILE';
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError([{ setting, message: `cannot read ${file} (${(err as NodeJS.ErrnoException).code})` }]);
    }
  }
  if (!text) return DEFAULT_QUERIES;
  let data: unknown;
  try {
    data = YAML.parse(text);
  } catch (err) {
    throw new ConfigError([{ setting, message: `not valid JSON/YAML: ${(err as Error).message}` }]);
  }
  const parsed = z.array(sourceQuerySchema).min(1, 'expected at least one query').safeParse(data);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => ({ setting, message: `${i.path.join('.') || '(list)'}: ${i.message}` })));
  }
  const names = parsed.data.map((q) => q.name);
  const dupes = names.filter((n, i) => names.indexOf(n) !== i);
  if (dupes.length) throw new ConfigError([{ setting, message: `duplicate query names: ${[...new Set(dupes)].join(', ')}` }]);
  return parsed.data;
}
