import { z } from 'zod';
import { BadCursorError, getSignal, listSignals, signalStats, topSignals } from '../../lib/store/signals.js';
import type { HarvestConfig } from '../../lib/config/harvest.js';
import { CATEGORIES, SENTIMENTS } from '../../lib/domain/scoring.js';
import type { ApiDeps } from '../deps.js';
import { problems } from '../problem.js';
import { defineRoute, type AnyRoute } from '../route.js';

/** Read access to the harvested signals (scope signals:read). */

const timestamp = z.iso.datetime({ offset: true });
const READ = { scope: 'signals:read' } as const;
const TAGS = ['signals'];

/** "24h", "7d" (ago) or an ISO timestamp. */
const since = z
  .string()
  .max(40)
  .describe('An ISO 8601 time, or a duration back from now such as "24h" or "7d"')
  .transform((value, ctx) => {
    const rel = value.match(/^(\d+)(m|h|d)$/);
    if (rel) return new Date(Date.now() - Number(rel[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 'm' | 'h' | 'd']).toISOString();
    if (!Number.isNaN(Date.parse(value)) && /^\d{4}-\d{2}-\d{2}/.test(value)) return new Date(value).toISOString();
    ctx.addIssue({ code: 'custom', message: `expected an ISO time or a duration such as "24h", got "${value}"` });
    return z.NEVER;
  });

const categoryList = z
  .string()
  .describe(`Comma-separated categories: ${CATEGORIES.join(', ')}`)
  .transform((value, ctx) => {
    const list = value.split(',').map((c) => c.trim()).filter(Boolean);
    const bad = list.filter((c) => !(CATEGORIES as readonly string[]).includes(c));
    if (bad.length) {
      ctx.addIssue({ code: 'custom', message: `unknown categories ${bad.join(', ')} (known: ${CATEGORIES.join(', ')})` });
      return z.NEVER;
    }
    return list;
  });

const score = z.coerce.number().min(0).max(100);

const Signal = z
  .object({
    id: z.string(),
    source: z.string(),
    externalId: z.string(),
    url: z.string().nullable(),
    author: z.object({ id: z.string().nullable(), handle: z.string().nullable(), name: z.string().nullable() }),
    text: z.string(),
    lang: z.string().nullable(),
    postedAt: timestamp,
    firstSeenAt: timestamp,
    lastSeenAt: timestamp,
    queryNames: z.array(z.string()),
    metrics: z.object({ likes: z.number(), reposts: z.number(), replies: z.number(), quotes: z.number() }),
    analysis: z
      .object({
        category: z.enum(CATEGORIES),
        sentiment: z.enum(SENTIMENTS),
        urgency: z.number().int().min(0).max(5),
        tags: z.array(z.string()),
        reasoning: z.string().nullable(),
        by: z.string().nullable(),
        at: timestamp,
      })
      .nullable(),
    score: z.number().nullable(),
    scoredAt: timestamp.nullable(),
    notifiedAt: timestamp.nullable(),
    intakeWorkflowId: z.string().nullable(),
  })
  .meta({ id: 'Signal' });

const ListQuery = z
  .object({
    min_score: score.optional(),
    max_score: score.optional(),
    category: categoryList.optional(),
    sentiment: z.enum(SENTIMENTS).optional(),
    source: z.enum(['x', 'feed']).optional(),
    query: z.string().max(63).optional().describe('Only signals found by this query name'),
    since: since.optional(),
    until: since.optional(),
    notified: z.enum(['true', 'false']).transform((v) => v === 'true').optional(),
    q: z.string().min(2).max(100).optional().describe('Text contains (case-insensitive)'),
    sort: z.enum(['recent', 'score']).default('recent'),
    limit: z.coerce.number().int().min(1).max(500).default(50),
    cursor: z.string().max(500).optional().describe('nextCursor of the previous page'),
    include_total: z.enum(['true', 'false']).transform((v) => v === 'true').default(false),
  })
  .refine((q) => q.min_score === undefined || q.max_score === undefined || q.min_score <= q.max_score, { message: 'min_score must not exceed max_score', path: ['min_score'] });

const Stats = z
  .object({
    total: z.number(),
    analysed: z.number(),
    unanalysed: z.number(),
    scored: z.number(),
    notified: z.number(),
    qualifying: z.number().describe('Signals at or above the notify threshold'),
    threshold: z.number(),
    averageScore: z.number().nullable(),
    byCategory: z.record(z.string(), z.number()),
    bySentiment: z.record(z.string(), z.number()),
    bySource: z.record(z.string(), z.number()),
    byAnalyser: z.record(z.string(), z.number()),
    scoreBuckets: z.array(z.object({ from: z.number(), to: z.number(), count: z.number() })),
    newestPostedAt: timestamp.nullable(),
    lastSeenAt: timestamp.nullable(),
    lastRun: z.record(z.string(), z.unknown()).nullable(),
  })
  .meta({ id: 'SignalStats' });

export function signalRoutes(deps: ApiDeps): AnyRoute[] {
  return signalRoutesWith(deps, deps.config.harvest);
}

export function signalRoutesWith(deps: ApiDeps, harvest: HarvestConfig): AnyRoute[] {
  return [
    defineRoute({
      method: 'get',
      path: '/signals',
      operationId: 'listSignals',
      summary: 'Signals, filtered and paginated (newest first, or by score)',
      tags: TAGS,
      auth: READ,
      query: ListQuery,
      responses: { 200: { description: 'A page of signals', schema: z.object({ items: z.array(Signal), nextCursor: z.string().nullable(), total: z.number().optional() }) } },
      async handler({ query }) {
        try {
          const page = await listSignals(deps.pool, {
            filter: {
              minScore: query.min_score,
              maxScore: query.max_score,
              category: query.category,
              sentiment: query.sentiment,
              source: query.source,
              queryName: query.query,
              since: query.since,
              until: query.until,
              notified: query.notified,
              text: query.q,
            },
            sort: query.sort,
            limit: query.limit,
            cursor: query.cursor,
            withTotal: query.include_total,
          });
          return { body: page };
        } catch (err) {
          if (err instanceof BadCursorError) throw problems.badRequest(err.message, { errors: [{ field: 'query.cursor', message: err.message }] });
          throw err;
        }
      },
    }),
    defineRoute({
      method: 'get',
      path: '/signals/top',
      operationId: 'topSignals',
      summary: 'Highest-scoring signals (default: posted in the last 24 hours)',
      tags: TAGS,
      auth: READ,
      query: z.object({
        limit: z.coerce.number().int().min(1).max(100).default(10),
        since: since.prefault('24h'),
        category: categoryList.optional(),
        min_score: score.optional(),
      }),
      responses: { 200: { description: 'Top signals', schema: z.object({ items: z.array(Signal), since: timestamp }) } },
      async handler({ query }) {
        const items = await topSignals(deps.pool, { limit: query.limit, since: query.since, category: query.category, minScore: query.min_score });
        return { body: { items, since: query.since } };
      },
    }),
    defineRoute({
      method: 'get',
      path: '/signals/stats',
      operationId: 'signalStats',
      summary: 'Counts by category, sentiment, source and analyser; score distribution; the last run',
      tags: TAGS,
      auth: READ,
      query: z.object({ since: since.optional() }),
      responses: { 200: { description: 'Statistics', schema: Stats } },
      async handler({ query }) {
        const threshold = harvest.tuning.notifyThreshold;
        const stats = await signalStats(deps.pool, { since: query.since, threshold });
        return { body: { ...stats, threshold } };
      },
    }),
    defineRoute({
      method: 'get',
      path: '/signals/:id',
      operationId: 'getSignal',
      summary: 'One signal with its analysis and score',
      tags: TAGS,
      auth: READ,
      params: z.object({ id: z.string().regex(/^\d{1,18}$/, 'expected a numeric signal id') }),
      responses: { 200: { description: 'Signal', schema: Signal } },
      async handler({ params }) {
        const signal = await getSignal(deps.pool, params.id);
        if (!signal) throw problems.notFound(`no signal ${params.id}`);
        return { body: signal };
      },
    }),
  ];
}
