import {
  ActivityFailure,
  continueAsNew,
  executeChild,
  log,
  ParentClosePolicy,
  proxyActivities,
  setHandler,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import { ApprovalState, ProspectDomain, ProspectStage } from '../../lib/domain/search-attributes.js';
import type { Activities } from '../../activities/index.js';
import { INTAKE_WORKFLOW } from '../intake/messages.js';
import { harvestStatusQuery } from './messages.js';
import {
  type AnalysisTotals,
  type FetchPageResult,
  type HarvestAnalysisInput,
  type HarvestInput,
  type HarvestState,
  type HarvestStage,
  type HarvestStatus,
  type HarvestSummary,
  type HarvestTotals,
  type HarvestTuning,
  type IntakeStartInput,
  type QueryOutcome,
} from '../../lib/domain/harvest.js';

/**
 * Signal harvest: fetch → upsert → analyse → score → notify → act, each step
 * an activity with an explicit retry policy. Signals stay in PostgreSQL:
 * activities exchange ids, id ranges and counts. Analysis runs in child
 * workflows of up to `chunkSize` signals, and the parent continues as new
 * when its history grows, so a large run stays far below history limits.
 */

const SCORE_PAGE = 2_000;
// Slack takes about one post per second per channel sustained; short bursts are fine.
const NOTIFY_CONCURRENCY = 4;
const NOTIFY_SLICE = 40;

function activitiesFor(tuning: Partial<HarvestTuning> | undefined) {
  const initialInterval = tuning?.retryBackoffMs ?? 1_000;
  return {
    store: proxyActivities<Activities>({
      startToCloseTimeout: '2 minutes',
      retry: { initialInterval, backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 20, nonRetryableErrorTypes: ['UnknownQuery'] },
    }),
    fetch: proxyActivities<Activities>({
      startToCloseTimeout: '90 seconds',
      retry: { initialInterval, backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 10, nonRetryableErrorTypes: ['SourceRejected'] },
    }),
    notify: proxyActivities<Activities>({
      startToCloseTimeout: '1 minute',
      retry: { initialInterval, backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 12, nonRetryableErrorTypes: ['SlackRejected'] },
    }),
  };
}

const emptyTotals = (): HarvestTotals => ({
  fetched: 0,
  inserted: 0,
  updated: 0,
  analysed: { llm: 0, keywords: 0, fallbackBatches: 0, llmCalls: 0 },
  scored: 0,
  qualifying: 0,
  notified: { messages: 0, signals: 0, recovered: 0 },
  intakes: { started: 0, skipped: 0 },
});

export async function harvest(input: HarvestInput = {}): Promise<HarvestSummary> {
  let state: HarvestState | undefined = input.resume;
  setHandler(harvestStatusQuery, () => statusOf(state));
  if (!state) state = await begin(input);
  const a = activitiesFor(state.tuning);

  const steps: [HarvestStage, HarvestStage, (st: HarvestState, acts: Acts) => Promise<void>][] = [
    ['fetch', 'analyse', fetchAll],
    ['analyse', 'score', analyseAll],
    ['score', 'notify', scoreAll],
    ['notify', 'act', notify],
    ['act', 'done', act],
  ];
  for (const [stage, next, step] of steps) {
    if (state.stage !== stage) continue;
    // Workflow time, kept in the state so a stage's clock survives continue-as-new.
    state.stageBegan ??= Date.now();
    await step(state, a);
    state.stageMs[stage] = Date.now() - state.stageBegan;
    state.stageBegan = undefined;
    state.stage = next;
  }
  return finish(state, a);
}

async function begin(input: HarvestInput): Promise<HarvestState> {
  const info = workflowInfo();
  // Stable across continue-as-new: claims and audit rows hang on it.
  const runKey = info.firstExecutionRunId;
  const trigger = input.trigger ?? 'api';
  const plan = await activitiesFor(input.tuning).store.harvestPlan({
    runKey,
    workflowId: info.workflowId,
    trigger,
    queryNames: input.queryNames,
    queries: input.queries,
    tuning: input.tuning,
  });
  return {
    runKey,
    startedAt: plan.startedAt,
    trigger,
    stage: 'fetch',
    queries: plan.queries,
    tuning: plan.tuning,
    slackChannel: plan.slackChannel,
    queryIndex: 0,
    page: 0,
    outcomes: [],
    analyseAfterId: '0',
    chunkIndex: 0,
    scoreAfterId: '0',
    notifyIndex: 0,
    totals: emptyTotals(),
    stageMs: {},
    continuedAsNew: 0,
  };
}

type Acts = ReturnType<typeof activitiesFor>;


/** Between steps: hand over to a fresh run when the history is getting long. */
async function maybeContinueAsNew(state: HarvestState): Promise<void> {
  const info = workflowInfo();
  if (!info.continueAsNewSuggested && info.historyLength < state.tuning.maxHistoryEvents) return;
  log.info('harvest continuing as new', { runKey: state.runKey, stage: state.stage, historyLength: info.historyLength });
  state.continuedAsNew++;
  await continueAsNew<typeof harvest>({ trigger: state.trigger, resume: state });
}

async function fetchAll(state: HarvestState, a: Acts): Promise<void> {
  const t = state.tuning;
  while (state.queryIndex < state.queries.length) {
    const query = state.queries[state.queryIndex]!;
    const outcome: QueryOutcome = (state.outcomes[state.queryIndex] ??= {
      name: query.name,
      source: query.source,
      pages: 0,
      fetched: 0,
      inserted: 0,
      updated: 0,
      stoppedBy: 'complete',
    });
    let result: FetchPageResult;
    try {
      result = await a.fetch.harvestFetchPage({
        runKey: state.runKey,
        query,
        page: state.page,
        window: state.window,
        pageSize: t.pageSize,
        maxPages: t.maxPages,
        rateLimitMaxWaitMs: t.rateLimitMaxWaitMs,
      });
    } catch (err) {
      if (!(err instanceof ActivityFailure)) throw err;
      // One broken query (bad syntax, a source down past its retries) must not sink the others.
      outcome.stoppedBy = 'rejected';
      outcome.error = (err.cause?.message ?? err.message).slice(0, 300);
      log.warn('harvest query failed', { query: query.name, error: outcome.error });
      nextQuery(state);
      continue;
    }
    outcome.pages++;
    outcome.fetched += result.fetched;
    outcome.inserted += result.inserted;
    outcome.updated += result.updated;
    state.totals.fetched += result.fetched;
    state.totals.inserted += result.inserted;
    state.totals.updated += result.updated;
    if (result.next) {
      state.page++;
      state.window = result.next;
    } else {
      outcome.stoppedBy = result.stoppedBy ?? 'complete';
      if (result.resetAt) outcome.resetAt = result.resetAt;
      nextQuery(state);
    }
    await maybeContinueAsNew(state);
  }
}

function nextQuery(state: HarvestState) {
  state.queryIndex++;
  state.page = 0;
  state.window = undefined;
}

async function analyseAll(state: HarvestState, a: Acts): Promise<void> {
  const t = state.tuning;
  for (;;) {
    const plan = await a.store.harvestPlanAnalysis({ afterId: state.analyseAfterId, chunkSize: t.chunkSize, chunks: t.childConcurrency, batchSize: t.batchSize });
    if (plan.chunks.length === 0) return;
    const results = await Promise.all(
      plan.chunks.map((chunk, i) => {
        const n = state.chunkIndex + i;
        const childInput: HarvestAnalysisInput = {
          runKey: state.runKey,
          chunk: n,
          ranges: chunk.ranges,
          concurrency: t.analysisConcurrency,
          // Room for a straggler committed late inside a range; anything past it waits for the next run.
          maxBatch: Math.min(100, t.batchSize * 2),
          llmAttempts: t.llmAttempts,
          llmBackoffMs: t.llmBackoffMs,
          retryBackoffMs: t.retryBackoffMs,
        };
        return executeChild(harvestAnalysis, { workflowId: `harvest-analysis-${state.runKey}-${n}`, args: [childInput] });
      }),
    );
    for (const r of results) addAnalysis(state.totals.analysed, r);
    state.chunkIndex += plan.chunks.length;
    state.analyseAfterId = plan.lastId!;
    await maybeContinueAsNew(state);
  }
}

function addAnalysis(into: AnalysisTotals, r: AnalysisTotals) {
  into.llm += r.llm;
  into.keywords += r.keywords;
  into.fallbackBatches += r.fallbackBatches;
  into.llmCalls += r.llmCalls;
}

async function scoreAll(state: HarvestState, a: Acts): Promise<void> {
  for (;;) {
    const r = await a.store.harvestScorePage({ since: state.startedAt, afterId: state.scoreAfterId, limit: SCORE_PAGE, threshold: state.tuning.notifyThreshold });
    state.totals.scored += r.scored;
    state.totals.qualifying += r.qualifying;
    if (!r.lastId) return;
    state.scoreAfterId = r.lastId;
  }
}

/**
 * Plans this run's Slack messages once (claims make each signal belong to one
 * message), then delivers them one activity each, so every message has its
 * own retries. A message whose delivery gives up stays owed: a later run
 * adopts it, so no signal is lost or sent twice.
 */
async function notify(state: HarvestState, a: Acts): Promise<void> {
  const t = state.tuning;
  const input = { runKey: state.runKey, threshold: t.notifyThreshold, digestMin: t.digestMin, digestList: t.digestList, channel: state.slackChannel };
  try {
    state.notifyKeys ??= await a.store.harvestPlanNotifications(input);
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    log.error('harvest notify planning failed; a later run notifies these signals', { runKey: state.runKey, error: err.cause?.message ?? err.message });
    return;
  }
  const n = state.totals.notified;
  const keys = state.notifyKeys;
  while (state.notifyIndex < keys.length) {
    // A sliding window of a few posts in flight (one slow retry does not hold up the rest), in
    // slices so the history can be handed over between them.
    const slice = keys.slice(state.notifyIndex, state.notifyIndex + NOTIFY_SLICE);
    await forEachLimited(slice, NOTIFY_CONCURRENCY, async (messageKey) => {
      try {
        const r = await a.notify.harvestDeliverNotification({ ...input, messageKey });
        if (r.outcome === 'done') return;
        n.messages++;
        n.signals += r.signals;
        if (r.outcome === 'recovered') n.recovered++;
      } catch (err) {
        if (!(err instanceof ActivityFailure)) throw err;
        log.error('harvest notify gave up on a message; a later run delivers it', { messageKey, error: err.cause?.message ?? err.message });
      }
    });
    state.notifyIndex += slice.length;
    await maybeContinueAsNew(state);
  }
}

async function act(state: HarvestState, a: Acts): Promise<void> {
  const t = state.tuning;
  const queryNames = state.queries.filter((q) => q.startIntake).map((q) => q.name);
  if (queryNames.length === 0 || t.intakeMaxPerRun === 0) return;
  const candidates = await a.store.harvestIntakeCandidates({
    since: state.startedAt,
    queryNames,
    threshold: t.intakeThreshold,
    categories: t.intakeCategories,
    limit: t.intakeMaxPerRun,
  });
  for (const c of candidates) {
    const intake: IntakeStartInput = {
      lead: { email: c.email, source: 'signal', notes: c.notes, ...(c.name ? { name: c.name } : {}), ...(c.company ? { company: c.company } : {}) },
      requestedBy: `harvest:${state.runKey}`,
    };
    try {
      // By type name, so the harvest does not import the intake's code; the intake's own id per
      // person, so a person already in an intake is not started twice. ABANDON: it outlives this run.
      await startChild(INTAKE_WORKFLOW, {
        workflowId: c.workflowId,
        taskQueue: t.intakeTaskQueue,
        args: [intake],
        parentClosePolicy: ParentClosePolicy.ABANDON,
        typedSearchAttributes: [
          { key: ProspectDomain, value: c.domain },
          { key: ProspectStage, value: 'SUBMITTED' },
          { key: ApprovalState, value: 'NONE' },
        ],
      });
      state.totals.intakes.started++;
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      state.totals.intakes.skipped++;
    }
    await a.store.harvestRecordIntake({ signalId: c.signalId, workflowId: c.workflowId });
  }
}

async function finish(state: HarvestState, a: Acts): Promise<HarvestSummary> {
  const info = workflowInfo();
  const summary: HarvestSummary = {
    runKey: state.runKey,
    trigger: state.trigger,
    startedAt: state.startedAt,
    finishedAt: new Date().toISOString(),
    queries: state.outcomes,
    totals: state.totals,
    stageMs: state.stageMs,
    continuedAsNew: state.continuedAsNew,
  };
  await a.store.harvestFinish({ runKey: state.runKey, summary: summary as unknown as Record<string, unknown> });
  await a.store.appendAudit({
    eventKey: `harvest:${state.runKey}:done`,
    workflowId: info.workflowId,
    runId: info.runId,
    actor: 'system',
    kind: 'step',
    action: 'harvest_run',
    outcome: state.outcomes.some((o) => o.stoppedBy === 'rejected') ? 'partial' : 'ok',
    details: { trigger: state.trigger, totals: state.totals, queries: state.outcomes.map((o) => ({ name: o.name, stoppedBy: o.stoppedBy, fetched: o.fetched })) },
  });
  return summary;
}

function statusOf(state: HarvestState | undefined): HarvestStatus {
  if (!state) {
    return { runKey: workflowInfo().firstExecutionRunId, stage: 'plan', queryIndex: 0, queries: [], totals: emptyTotals(), continuedAsNew: 0 };
  }
  return { runKey: state.runKey, stage: state.stage, queryIndex: state.queryIndex, queries: state.outcomes, totals: state.totals, continuedAsNew: state.continuedAsNew };
}

// ---- child: analysis of one chunk ------------------------------------------------------------------------

/**
 * Analyses a chunk of signals: one LLM call per range (batch), a few at a
 * time. A batch the LLM cannot do after its retries (or refuses) is analysed
 * by the deterministic keyword analyser instead, so every signal ends analysed.
 */
export async function harvestAnalysis(input: HarvestAnalysisInput): Promise<AnalysisTotals> {
  const llm = proxyActivities<Activities>({
    startToCloseTimeout: '2 minutes',
    retry: {
      initialInterval: input.llmBackoffMs,
      backoffCoefficient: 2,
      maximumInterval: '30 seconds',
      maximumAttempts: input.llmAttempts,
      nonRetryableErrorTypes: ['LlmUnusable', 'LlmRejected'],
    },
  });
  const { store } = activitiesFor({ retryBackoffMs: input.retryBackoffMs });
  const totals: AnalysisTotals = { llm: 0, keywords: 0, fallbackBatches: 0, llmCalls: 0 };
  await forEachLimited(input.ranges, input.concurrency, async ([afterId, throughId]) => {
    const range = { afterId, throughId, maxBatch: input.maxBatch };
    try {
      const r = await llm.harvestAnalyseWithLlm(range);
      totals.llm += r.llm;
      totals.keywords += r.keywords;
      if (r.llm + r.keywords > 0) totals.llmCalls++;
    } catch (err) {
      if (!(err instanceof ActivityFailure)) throw err;
      log.warn('LLM analysis failed; keyword analysis instead', { afterId, throughId, error: err.cause?.message ?? err.message });
      const r = await store.harvestAnalyseWithKeywords(range);
      totals.keywords += r.keywords;
      totals.fallbackBatches++;
    }
  });
  return totals;
}

/** Runs `fn` over items with at most `limit` in flight (deterministic: order follows the history). */
async function forEachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(lanes);
}
