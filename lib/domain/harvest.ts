/**
 * The harvest's data as its workflows, activities, the API and the CLI pass
 * it around. Plain data only: this module is bundled into the workflow sandbox.
 */
import type { Category } from './scoring.js';

export type SourceKind = 'x' | 'feed';

/** A configured query as the workflow passes it around (plain JSON). */
export interface SourceQuery {
  name: string;
  source: SourceKind;
  /** X search query. */
  query?: string;
  /** Feed URL. */
  url?: string;
  startIntake?: boolean;
  enabled?: boolean;
  maxPages?: number;
}

export interface SignalMetrics {
  likes: number;
  reposts: number;
  replies: number;
  quotes: number;
}

/** One post as a source reports it, before storage. */
export interface SignalInput {
  source: SourceKind;
  /** Unique within the source (X: tweet id; feeds: the entry id or link). */
  externalId: string;
  url?: string;
  authorId?: string;
  authorHandle?: string;
  authorName?: string;
  text: string;
  lang?: string;
  /** ISO 8601. */
  postedAt: string;
  metrics: SignalMetrics;
  /** What the source sent, trimmed to what is worth keeping. */
  raw: Record<string, unknown>;
}

export type HarvestTrigger = 'schedule' | 'api' | 'cli' | 'backfill' | 'test' | 'bench';

export interface HarvestInput {
  trigger?: HarvestTrigger;
  /** Only these configured queries (by name); default: every enabled one. */
  queryNames?: string[];
  /** Inline queries instead of the configured ones (ad-hoc runs, tests, the benchmark). */
  queries?: SourceQuery[];
  /** Per-run overrides of the configured tuning. */
  tuning?: Partial<HarvestTuning>;
  /** Set by the workflow itself when it continues as new. */
  resume?: HarvestState;
}

/** Where a query's paging stands inside the current window. */
export interface FetchWindow {
  sinceCursor: string | null;
  newestCursor: string | null;
  pageToken?: string;
}

export interface FetchPageInput {
  runKey: string;
  query: SourceQuery;
  /** 0 for the first page of this run: the activity loads the cursor (or an open window) itself. */
  page: number;
  window?: FetchWindow;
  pageSize: number;
  maxPages: number;
  rateLimitMaxWaitMs: number;
}

export type FetchStop = 'complete' | 'rate_limit' | 'page_cap' | 'rejected';

export interface FetchPageResult {
  fetched: number;
  inserted: number;
  updated: number;
  /** Absent when this query is done for the run. */
  next?: FetchWindow;
  stoppedBy?: FetchStop;
  /** When the source's budget comes back (ISO), when stopped by a rate limit. */
  resetAt?: string;
  warnings?: string[];
}

export interface QueryOutcome {
  name: string;
  source: SourceKind;
  pages: number;
  fetched: number;
  inserted: number;
  updated: number;
  stoppedBy: FetchStop;
  resetAt?: string;
  error?: string;
}

export interface AnalysisChunk {
  /** (afterId, throughId] ranges, each holding at most one batch of unanalysed signals. */
  ranges: [string, string][];
  count: number;
}

export interface HarvestAnalysisInput {
  runKey: string;
  chunk: number;
  ranges: [string, string][];
  concurrency: number;
  maxBatch: number;
  llmAttempts: number;
  llmBackoffMs: number;
  retryBackoffMs: number;
}

export interface AnalysisTotals {
  llm: number;
  keywords: number;
  /** Batches the LLM could not do at all (after retries): analysed by keywords. */
  fallbackBatches: number;
  llmCalls: number;
}

export interface HarvestTotals {
  fetched: number;
  inserted: number;
  updated: number;
  analysed: AnalysisTotals;
  scored: number;
  qualifying: number;
  notified: { messages: number; signals: number; recovered: number };
  intakes: { started: number; skipped: number };
}

export type HarvestStage = 'plan' | 'fetch' | 'analyse' | 'score' | 'notify' | 'act' | 'done';

export interface HarvestState {
  runKey: string;
  startedAt: string;
  trigger: HarvestTrigger;
  stage: HarvestStage;
  queries: SourceQuery[];
  tuning: HarvestTuning;
  slackChannel: string;
  queryIndex: number;
  page: number;
  window?: FetchWindow;
  outcomes: QueryOutcome[];
  analyseAfterId: string;
  chunkIndex: number;
  scoreAfterId: string;
  /** Slack messages this run owes, and how many are delivered. */
  notifyKeys?: string[];
  notifyIndex: number;
  totals: HarvestTotals;
  stageMs: Partial<Record<HarvestStage, number>>;
  /** Workflow time the current stage began (ms since epoch). */
  stageBegan?: number;
  continuedAsNew: number;
}

export interface HarvestSummary {
  runKey: string;
  trigger: HarvestTrigger;
  startedAt: string;
  finishedAt: string;
  queries: QueryOutcome[];
  totals: HarvestTotals;
  /** Wall time per stage (ms), from workflow time. */
  stageMs: Partial<Record<HarvestStage, number>>;
  continuedAsNew: number;
}

/** What the `harvestStatus` query answers while a run is going. */
export interface HarvestStatus {
  runKey: string;
  stage: HarvestStage;
  queryIndex: number;
  queries: QueryOutcome[];
  totals: HarvestTotals;
  continuedAsNew: number;
}

export interface IntakeCandidate {
  signalId: string;
  /** Normalised. */
  email: string;
  domain: string;
  /** The intake's deterministic id for this person (lib/domain/prospect.ts intakeWorkflowId). */
  workflowId: string;
  name?: string;
  company?: string;
  notes: string;
}

/** The intake workflow's input (IntakeInput in lib/domain/prospect.ts), as far as the harvest fills it. */
export interface IntakeStartInput {
  lead: { email: string; name?: string; company?: string; notes?: string; source: 'signal' };
  requestedBy: string;
}

/** Tunables a run uses; the workflow input may override each (tests pass short ones). */
export interface HarvestTuning {
  pageSize: number;
  maxPages: number;
  rateLimitMaxWaitMs: number;
  batchSize: number;
  analysisConcurrency: number;
  chunkSize: number;
  childConcurrency: number;
  llmAttempts: number;
  llmBackoffMs: number;
  retryBackoffMs: number;
  notifyThreshold: number;
  digestMin: number;
  digestList: number;
  intakeThreshold: number;
  intakeCategories: Category[];
  intakeMaxPerRun: number;
  /** Task queue of the prospect intake workflow started for qualifying signals. */
  intakeTaskQueue: string;
  /** Continue-as-new when the history grows past this many events. */
  maxHistoryEvents: number;
}
