import { ApplicationFailure } from '@temporalio/common';
import OpenAI from 'openai';
import type { WebClient } from '@slack/web-api';
import type { HarvestConfig } from '../../lib/config/harvest.js';
import { intakeWorkflowId } from '../../lib/domain/prospect.js';
import { normaliseEmail } from '../../lib/domain/email.js';
import type {
  AnalysisChunk,
  FetchPageInput,
  FetchPageResult,
  FetchWindow,
  HarvestTrigger,
  HarvestTuning,
  IntakeCandidate,
  SourceQuery,
} from '../../lib/domain/harvest.js';
import { analyseWithLlm, keywordAnalysis, LlmMalformedError, LlmRefusalError, LlmTruncatedError } from './analysis.js';
import type { ActivityDeps } from '../deps.js';
import { createNotifier, isPermanentSlackError, slackRetryAfterMs, type DeliveryOutcome, type NotifyInput } from './notify.js';
import { createOpenAI } from '../providers/openai.js';
import { scorePage, type ScorePageInput, type ScorePageResult } from './scoring.js';
import { createSlack } from '../providers/slack.js';
import { createSources, SourceRateLimitedError, SourceRefusedError, SourceRejectedError, type SourceRegistry } from './sources/index.js';
import { appendAudit } from '../../lib/store/audit.js';
import {
  completeWindow,
  contactSignals,
  discardOpenWindow,
  readCursor,
  readOpenWindow,
  recordIntake,
  recordRunEnd,
  recordRunStart,
  saveAnalyses,
  saveOpenWindow,
  signalsForAnalysis,
  unanalysedIds,
  upsertSignals,
} from '../../lib/store/signals.js';

/**
 * The harvest's activities: each step of workflows/harvest/process.ts. They pass ids
 * and counts, never signal payloads: the data stays in PostgreSQL. Errors a
 * retry cannot fix become non-retryable ApplicationFailures; rate limits
 * become failures with the provider's own retry delay.
 */

export interface HarvestActivityOptions {
  harvest?: HarvestConfig;
  sources?: SourceRegistry;
  openai?: OpenAI;
  slack?: WebClient;
}

export interface PlanInput {
  runKey: string;
  workflowId: string;
  trigger: HarvestTrigger;
  queryNames?: string[];
  queries?: SourceQuery[];
  tuning?: Partial<HarvestTuning>;
}

export interface PlanResult {
  startedAt: string;
  queries: SourceQuery[];
  tuning: HarvestTuning;
  slackChannel: string;
}

export interface AnalyseRangeInput {
  afterId: string;
  throughId: string;
  maxBatch: number;
}

export interface AnalyseRangeResult {
  llm: number;
  keywords: number;
  tokens: number;
}

export function createHarvestActivities(deps: ActivityDeps, options: HarvestActivityOptions = {}) {
  const { pool, log } = deps;
  const harvest = () => options.harvest ?? deps.config.harvest;
  let sources = options.sources;
  const source = (q: SourceQuery) => (sources ??= createSources(deps.config))[q.source];
  const openai = options.openai ?? createOpenAI(deps.config.providers.openai, { timeoutMs: 60_000 });
  const model = deps.config.providers.openai.model;
  const slack = options.slack ?? createSlack(deps.config.providers.slack, { timeout: 15_000 });
  const notifier = createNotifier({ pool, slack, log });

  return {
    /** Resolves the queries and tuning of a run and records its start (DB time is the run's clock). */
    async harvestPlan(input: PlanInput): Promise<PlanResult> {
      const cfg = harvest();
      let queries = input.queries ?? cfg.queries.filter((q) => q.enabled !== false);
      if (input.queryNames?.length) {
        const unknown = input.queryNames.filter((n) => !queries.some((q) => q.name === n));
        if (unknown.length) {
          throw ApplicationFailure.create({ type: 'UnknownQuery', nonRetryable: true, message: `unknown or disabled queries: ${unknown.join(', ')}` });
        }
        queries = queries.filter((q) => input.queryNames!.includes(q.name));
      }
      const startedAt = await recordRunStart(pool, { runKey: input.runKey, workflowId: input.workflowId, trigger: input.trigger });
      return { startedAt, queries, tuning: { ...cfg.tuning, ...definedOnly(input.tuning) }, slackChannel: cfg.slackChannel };
    },

    /** Fetches one page of one query, upserts it, and says where to go next. */
    async harvestFetchPage(input: FetchPageInput): Promise<FetchPageResult> {
      const q = input.query;
      const src = source(q);
      const window = input.page === 0 ? await openingWindow(q) : input.window!;
      let page;
      try {
        page = await src.fetchPage({ query: q, cursor: window.sinceCursor, pageToken: window.pageToken, pageSize: input.pageSize });
      } catch (err) {
        if (err instanceof SourceRateLimitedError) {
          const waitMs = err.resetAt - Date.now();
          if (waitMs <= input.rateLimitMaxWaitMs) {
            throw ApplicationFailure.create({ type: 'SourceRateLimited', message: err.message, nextRetryDelay: Math.max(500, waitMs) });
          }
          if (window.pageToken) await saveOpenWindow(pool, q.source, q.name, { ...window, pageToken: window.pageToken, pagesRead: input.page });
          log.warn({ query: q.name, resetAt: new Date(err.resetAt).toISOString() }, 'harvest: source rate limit spent; stopping this query until it resets');
          return { fetched: 0, inserted: 0, updated: 0, stoppedBy: 'rate_limit', resetAt: new Date(err.resetAt).toISOString() };
        }
        if (err instanceof SourceRejectedError && err.badPageToken) {
          // An expired continuation: read the window again from its start (upserts make that harmless).
          await discardOpenWindow(pool, q.source, q.name);
          log.warn({ query: q.name }, 'harvest: page token refused; restarting the window');
          return { fetched: 0, inserted: 0, updated: 0, next: { sinceCursor: window.sinceCursor, newestCursor: null } };
        }
        if (err instanceof SourceRefusedError) {
          // The reason and the origin are kept; the answer's body never is.
          log.warn({ query: q.name, source: q.source, page: input.page, reason: err.reason, error: err.message }, 'harvest: fetch refused by the outbound policy');
          await appendAudit(pool, {
            eventKey: `harvest:${input.runKey}:refused:${q.name}:${input.page}`,
            actor: 'system',
            kind: 'step',
            action: 'harvest_fetch_refused',
            outcome: 'refused',
            details: { runKey: input.runKey, query: q.name, source: q.source, page: input.page, reason: err.reason, error: err.message.slice(0, 500) },
          });
        }
        if (err instanceof SourceRejectedError) {
          throw ApplicationFailure.create({ type: 'SourceRejected', nonRetryable: true, message: err.message });
        }
        throw err;
      }
      const stored = await upsertSignals(pool, page.signals, q.name);
      const counts = { fetched: page.signals.length, ...stored, ...(page.warnings?.length ? { warnings: page.warnings.slice(0, 5) } : {}) };
      const newestCursor = window.newestCursor ?? page.cursorCandidate ?? null;
      const windowEnds = !page.nextPageToken || (src.stopOnKnownPage && stored.inserted === 0);
      if (windowEnds) {
        await completeWindow(pool, q.source, q.name, newestCursor ?? window.sinceCursor);
        return { ...counts, stoppedBy: 'complete' };
      }
      const next: FetchWindow = { sinceCursor: window.sinceCursor, newestCursor, pageToken: page.nextPageToken };
      const pagesRead = input.page + 1;
      const spent = page.rateLimit ? page.rateLimit.remaining <= 0 : false;
      if (spent || pagesRead >= (q.maxPages ?? input.maxPages)) {
        // Stop politely; the next run resumes this window where it was left.
        await saveOpenWindow(pool, q.source, q.name, { sinceCursor: next.sinceCursor, newestCursor, pageToken: next.pageToken!, pagesRead });
        const resetAt = spent && page.rateLimit ? new Date(page.rateLimit.resetAt).toISOString() : undefined;
        if (spent) log.warn({ query: q.name, resetAt }, 'harvest: source budget spent; the rest of this window waits for the next run');
        return { ...counts, stoppedBy: spent ? 'rate_limit' : 'page_cap', ...(resetAt ? { resetAt } : {}) };
      }
      return { ...counts, next };
    },

    /** The next chunks of unanalysed signals, cut into id ranges of one batch each. */
    async harvestPlanAnalysis(input: { afterId: string; chunkSize: number; chunks: number; batchSize: number }): Promise<{ chunks: AnalysisChunk[]; lastId: string | null }> {
      const ids = await unanalysedIds(pool, input.afterId, input.chunkSize * input.chunks);
      const chunks: AnalysisChunk[] = [];
      let previous = input.afterId;
      for (let c = 0; c < ids.length; c += input.chunkSize) {
        const slice = ids.slice(c, c + input.chunkSize);
        const ranges: [string, string][] = [];
        for (let b = 0; b < slice.length; b += input.batchSize) {
          const through = slice[Math.min(b + input.batchSize, slice.length) - 1]!;
          ranges.push([previous, through]);
          previous = through;
        }
        chunks.push({ ranges, count: slice.length });
      }
      return { chunks, lastId: ids.length ? ids[ids.length - 1]! : null };
    },

    /** One LLM call for the unanalysed signals of a range; signals it leaves out get the keyword analysis. */
    async harvestAnalyseWithLlm(input: AnalyseRangeInput): Promise<AnalyseRangeResult> {
      const signals = await signalsForAnalysis(pool, input.afterId, input.throughId, input.maxBatch);
      if (signals.length === 0) return { llm: 0, keywords: 0, tokens: 0 };
      let result;
      try {
        result = await analyseWithLlm(openai, model, signals);
      } catch (err) {
        throw llmFailure(err);
      }
      const missing = new Set(result.missing);
      const fallback = signals.filter((s) => missing.has(s.id)).map(keywordAnalysis);
      await saveAnalyses(pool, [...result.analyses, ...fallback], (a) => (missing.has(a.id) ? 'keywords' : `llm:${model}`));
      return { llm: result.analyses.length, keywords: fallback.length, tokens: result.tokens };
    },

    /** The deterministic fallback for a whole range (the LLM failed after its retries). */
    async harvestAnalyseWithKeywords(input: AnalyseRangeInput): Promise<AnalyseRangeResult> {
      const signals = await signalsForAnalysis(pool, input.afterId, input.throughId, input.maxBatch);
      await saveAnalyses(pool, signals.map(keywordAnalysis), () => 'keywords');
      return { llm: 0, keywords: signals.length, tokens: 0 };
    },

    async harvestScorePage(input: ScorePageInput): Promise<ScorePageResult> {
      return scorePage(pool, harvest().weights, input);
    },

    /** Claims the qualifying signals for this run's Slack messages (once per run); returns the keys still owed. */
    async harvestPlanNotifications(input: NotifyInput): Promise<string[]> {
      return notifier.plan(input);
    },

    /** Posts one owed message, or finds it already posted by an earlier attempt. */
    async harvestDeliverNotification(input: NotifyInput & { messageKey: string }): Promise<{ outcome: DeliveryOutcome; signals: number }> {
      try {
        return await notifier.deliver(input.messageKey, input);
      } catch (err) {
        throw slackFailure(err);
      }
    },

    /** Qualifying signals of intake-enabled queries whose author is a known contact, one per email. */
    async harvestIntakeCandidates(input: { since: string; queryNames: string[]; threshold: number; categories: string[]; limit: number }): Promise<IntakeCandidate[]> {
      if (input.queryNames.length === 0 || input.limit === 0) return [];
      const signals = await contactSignals(pool, input);
      return signals.flatMap((r) => {
        const email = normaliseEmail(r.email);
        if (!email.ok) {
          log.warn({ signalId: r.signalId, reason: email.reason }, 'harvest: known author has an unusable email; no intake');
          return [];
        }
        return [{
        signalId: r.signalId,
        email: email.email,
        domain: email.domain,
        workflowId: intakeWorkflowId(email.email),
        ...(r.name ? { name: r.name } : {}),
        ...(r.company ? { company: r.company } : {}),
        notes: `Public signal (${r.category}, score ${Math.round(r.score)}) by ${r.authorHandle} on ${r.source}${r.url ? ` ${r.url}` : ''}: ${String(r.text).slice(0, 500)}`,
        }];
      });
    },

    async harvestRecordIntake(input: { signalId: string; workflowId: string }): Promise<void> {
      await recordIntake(pool, input.signalId, input.workflowId);
    },

    async harvestFinish(input: { runKey: string; summary: Record<string, unknown> }): Promise<void> {
      await recordRunEnd(pool, input.runKey, input.summary);
    },
  };

  async function openingWindow(q: SourceQuery): Promise<FetchWindow> {
    const open = await readOpenWindow(pool, q.source, q.name);
    if (open) return { sinceCursor: open.sinceCursor, newestCursor: open.newestCursor, pageToken: open.pageToken };
    return { sinceCursor: await readCursor(pool, q.source, q.name), newestCursor: null };
  }
}

export type HarvestActivities = ReturnType<typeof createHarvestActivities>;

function definedOnly<T extends object>(o: T | undefined): Partial<T> {
  return Object.fromEntries(Object.entries(o ?? {}).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** LLM errors as Temporal sees them: unusable answers and refused requests are not retried (the keyword analyser takes over). */
function llmFailure(err: unknown): Error {
  if (err instanceof LlmRefusalError || err instanceof LlmTruncatedError) {
    return ApplicationFailure.create({ type: 'LlmUnusable', nonRetryable: true, message: err.message });
  }
  if (err instanceof LlmMalformedError) return ApplicationFailure.create({ type: 'LlmMalformed', message: err.message });
  if (err instanceof OpenAI.RateLimitError) {
    const after = Number(err.headers?.get?.('retry-after'));
    return ApplicationFailure.create({
      type: 'LlmRateLimited',
      message: err.message,
      ...(Number.isFinite(after) && after > 0 ? { nextRetryDelay: Math.min(after * 1000, 120_000) } : {}),
    });
  }
  if (err instanceof OpenAI.APIError && err.status !== undefined && err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 409) {
    return ApplicationFailure.create({ type: 'LlmRejected', nonRetryable: true, message: err.message });
  }
  return err as Error;
}

function slackFailure(err: unknown): Error {
  if (isPermanentSlackError(err)) return ApplicationFailure.create({ type: 'SlackRejected', nonRetryable: true, message: (err as Error).message });
  const after = slackRetryAfterMs(err);
  if (after !== undefined) return ApplicationFailure.create({ type: 'SlackRateLimited', message: (err as Error).message, nextRetryDelay: Math.max(500, after) });
  return err as Error;
}
