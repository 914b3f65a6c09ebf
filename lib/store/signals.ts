import type pg from 'pg';
import { inTransaction, type Pool } from './db.js';
import { quoteIdent, resetSequence, sequenceLastValue, type ColumnInfo } from './tables.js';
import type { Queryable } from './audit.js';
import type { Category, ScoreInput, Sentiment } from '../domain/scoring.js';
import type { SignalInput, SourceKind } from '../domain/harvest.js';

/**
 * The signals and the harvest's place in each source (`signals`,
 * `source_cursors`, `source_open_windows`, `harvest_runs`): the only module
 * that writes them, so the rules a signal row keeps (a repeat sighting only
 * raises its metrics; notified_at and intake_workflow_id are set once) live in
 * one place. Ids are bigserial and travel as strings. Every write here is safe
 * to repeat: activities retry.
 */

// ---- upsert --------------------------------------------------------------------------

export interface UpsertOutcome {
  inserted: number;
  updated: number;
}

/**
 * One row per (source, external_id). A repeat sighting only ever raises the
 * metrics (GREATEST), merges the query names and refreshes last_seen_at; the
 * text and analysis of the first sighting stay.
 */
export async function upsertSignals(pool: Pool, signals: SignalInput[], queryName: string): Promise<UpsertOutcome> {
  const unique = dedupe(signals);
  if (unique.length === 0) return { inserted: 0, updated: 0 };
  const col = <T>(f: (s: SignalInput) => T) => unique.map(f);
  const { rows } = await pool.query<{ inserted: boolean }>(
    `INSERT INTO signals AS s (source, external_id, url, author_id, author_handle, author_name, text, lang, posted_at,
                              query_names, likes, reposts, replies, quotes, raw)
     SELECT t.source, t.external_id, t.url, t.author_id, t.author_handle, t.author_name, t.text, t.lang, t.posted_at,
            ARRAY[$15::text], t.likes, t.reposts, t.replies, t.quotes, t.raw::jsonb
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                   $9::timestamptz[], $10::int[], $11::int[], $12::int[], $13::int[], $14::text[])
         AS t(source, external_id, url, author_id, author_handle, author_name, text, lang, posted_at, likes, reposts, replies, quotes, raw)
     ON CONFLICT (source, external_id) DO UPDATE SET
       likes = GREATEST(s.likes, EXCLUDED.likes),
       reposts = GREATEST(s.reposts, EXCLUDED.reposts),
       replies = GREATEST(s.replies, EXCLUDED.replies),
       quotes = GREATEST(s.quotes, EXCLUDED.quotes),
       query_names = ARRAY(SELECT DISTINCT q FROM unnest(s.query_names || EXCLUDED.query_names) AS q ORDER BY q),
       url = COALESCE(s.url, EXCLUDED.url),
       author_handle = COALESCE(s.author_handle, EXCLUDED.author_handle),
       author_name = COALESCE(s.author_name, EXCLUDED.author_name),
       last_seen_at = now()
     RETURNING (xmax = 0) AS inserted`,
    [
      col((s) => s.source),
      col((s) => clean(s.externalId)),
      col((s) => clean(s.url)),
      col((s) => clean(s.authorId)),
      col((s) => clean(s.authorHandle)),
      col((s) => clean(s.authorName)),
      col((s) => clean(s.text) ?? ''),
      col((s) => clean(s.lang)),
      col((s) => s.postedAt),
      col((s) => metric(s.metrics.likes)),
      col((s) => metric(s.metrics.reposts)),
      col((s) => metric(s.metrics.replies)),
      col((s) => metric(s.metrics.quotes)),
      col((s) => JSON.stringify(s.raw ?? {}).replace(/\\u0000/g, '')),
      queryName,
    ],
  );
  const inserted = rows.filter((r) => r.inserted).length;
  return { inserted, updated: rows.length - inserted };
}

/** One page can list the same post twice (an edit, a retry upstream); ON CONFLICT may touch a row once per statement. */
function dedupe(signals: SignalInput[]): SignalInput[] {
  const byKey = new Map<string, SignalInput>();
  for (const s of signals) {
    const key = `${s.source}\u0000${s.externalId}`;
    const seen = byKey.get(key);
    if (!seen) byKey.set(key, s);
    else
      byKey.set(key, {
        ...seen,
        metrics: {
          likes: Math.max(seen.metrics.likes, s.metrics.likes),
          reposts: Math.max(seen.metrics.reposts, s.metrics.reposts),
          replies: Math.max(seen.metrics.replies, s.metrics.replies),
          quotes: Math.max(seen.metrics.quotes, s.metrics.quotes),
        },
      });
  }
  return [...byKey.values()];
}

/** PostgreSQL text cannot hold NUL. */
function clean(value: string | undefined): string | null {
  return value === undefined || value === null ? null : value.replace(/\u0000/g, '');
}

function metric(n: number): number {
  return Number.isFinite(n) && n > 0 ? Math.min(Math.floor(n), 2_147_483_647) : 0;
}

// ---- cursors and open windows --------------------------------------------------------------

export async function readCursor(pool: Pool, source: SourceKind, queryName: string): Promise<string | null> {
  const { rows } = await pool.query<{ cursor: string | null }>('SELECT cursor FROM source_cursors WHERE source = $1 AND query_name = $2', [source, queryName]);
  return rows[0]?.cursor ?? null;
}

/** Ends a window: the new cursor is stored and any open window for the query is closed, together. */
export async function completeWindow(pool: Pool, source: SourceKind, queryName: string, cursor: string | null): Promise<void> {
  await inTransaction(pool, async (client) => {
    if (cursor !== null) {
      await client.query(
        `INSERT INTO source_cursors (source, query_name, cursor, updated_at) VALUES ($1, $2, $3, now())
         ON CONFLICT (source, query_name) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()`,
        [source, queryName, cursor],
      );
    }
    await client.query('DELETE FROM source_open_windows WHERE source = $1 AND query_name = $2', [source, queryName]);
  });
}

export interface OpenWindow {
  sinceCursor: string | null;
  newestCursor: string | null;
  pageToken: string;
  pagesRead: number;
}

export async function readOpenWindow(pool: Pool, source: SourceKind, queryName: string): Promise<OpenWindow | null> {
  const { rows } = await pool.query(
    'SELECT since_cursor, newest_cursor, page_token, pages_read FROM source_open_windows WHERE source = $1 AND query_name = $2',
    [source, queryName],
  );
  const r = rows[0];
  return r ? { sinceCursor: r.since_cursor, newestCursor: r.newest_cursor, pageToken: r.page_token, pagesRead: r.pages_read } : null;
}

export async function saveOpenWindow(pool: Pool, source: SourceKind, queryName: string, w: OpenWindow): Promise<void> {
  await pool.query(
    `INSERT INTO source_open_windows (source, query_name, since_cursor, newest_cursor, page_token, pages_read, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, now())
     ON CONFLICT (source, query_name) DO UPDATE SET since_cursor = EXCLUDED.since_cursor, newest_cursor = EXCLUDED.newest_cursor,
       page_token = EXCLUDED.page_token, pages_read = EXCLUDED.pages_read, updated_at = now()`,
    [source, queryName, w.sinceCursor, w.newestCursor, w.pageToken, w.pagesRead],
  );
}

export async function discardOpenWindow(pool: Pool, source: SourceKind, queryName: string): Promise<void> {
  await pool.query('DELETE FROM source_open_windows WHERE source = $1 AND query_name = $2', [source, queryName]);
}

// ---- analysis -----------------------------------------------------------------------------------

/** Ids not yet analysed, after `afterId`, in id order. */
export async function unanalysedIds(pool: Pool, afterId: string, limit: number): Promise<string[]> {
  const { rows } = await pool.query<{ id: string }>(
    'SELECT id FROM signals WHERE analysed_at IS NULL AND id > $1 ORDER BY id LIMIT $2',
    [afterId, limit],
  );
  return rows.map((r) => r.id);
}

export interface SignalForAnalysis {
  id: string;
  text: string;
  authorHandle: string | null;
  likes: number;
  reposts: number;
  replies: number;
  quotes: number;
}

/** The still-unanalysed signals of an id range (afterId, throughId]. */
export async function signalsForAnalysis(pool: Pool, afterId: string, throughId: string, limit: number): Promise<SignalForAnalysis[]> {
  const { rows } = await pool.query(
    `SELECT id, text, author_handle, likes, reposts, replies, quotes FROM signals
      WHERE id > $1 AND id <= $2 AND analysed_at IS NULL ORDER BY id LIMIT $3`,
    [afterId, throughId, limit],
  );
  return rows.map((r) => ({ id: r.id, text: r.text, authorHandle: r.author_handle, likes: r.likes, reposts: r.reposts, replies: r.replies, quotes: r.quotes }));
}

export interface Analysis {
  id: string;
  category: Category;
  sentiment: Sentiment;
  urgency: number;
  tags: string[];
  reasoning: string;
}

/** Stores analyses; `by` says who made them (llm:<model> or keywords). */
export async function saveAnalyses(pool: Pool, analyses: Analysis[], by: (a: Analysis) => string): Promise<number> {
  if (analyses.length === 0) return 0;
  const { rowCount } = await pool.query(
    `UPDATE signals s SET category = t.category, sentiment = t.sentiment, urgency = t.urgency,
            tags = ARRAY(SELECT jsonb_array_elements_text(t.tags::jsonb)), reasoning = t.reasoning,
            analysed_by = t.analysed_by, analysed_at = now()
       FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::text[])
         AS t(id, category, sentiment, urgency, tags, reasoning, analysed_by)
      WHERE s.id = t.id`,
    [
      analyses.map((a) => a.id),
      analyses.map((a) => a.category),
      analyses.map((a) => a.sentiment),
      analyses.map((a) => a.urgency),
      analyses.map((a) => JSON.stringify(a.tags)),
      analyses.map((a) => clean(a.reasoning)),
      analyses.map(by),
    ],
  );
  return rowCount ?? 0;
}

// ---- scoring -------------------------------------------------------------------------------------

/** A signal's score inputs (lib/domain/scoring.ts), with its id. */
export interface SignalForScoring extends ScoreInput {
  id: string;
}

/** Analysed signals seen or analysed since `since` (this run's start), in id order after `afterId`. */
export async function signalsToScore(pool: Pool, since: string, afterId: string, limit: number): Promise<SignalForScoring[]> {
  const { rows } = await pool.query(
    `SELECT id, likes, reposts, replies, quotes, urgency, category, sentiment, posted_at FROM signals
      WHERE analysed_at IS NOT NULL AND (last_seen_at >= $1 OR analysed_at >= $1) AND id > $2
      ORDER BY id LIMIT $3`,
    [since, afterId, limit],
  );
  return rows.map((r) => ({
    id: r.id,
    likes: r.likes,
    reposts: r.reposts,
    replies: r.replies,
    quotes: r.quotes,
    urgency: r.urgency ?? 0,
    category: r.category,
    sentiment: r.sentiment,
    postedAtMs: (r.posted_at as Date).getTime(),
  }));
}

export async function saveScores(pool: Pool, scores: { id: string; score: number }[]): Promise<void> {
  if (scores.length === 0) return;
  await pool.query(
    `UPDATE signals s SET score = t.score, scored_at = now()
       FROM unnest($1::bigint[], $2::numeric[]) AS t(id, score) WHERE s.id = t.id`,
    [scores.map((s) => s.id), scores.map((s) => s.score)],
  );
}

// ---- notification and intake --------------------------------------------------------------------

/** Marks signals as told to Slack; a signal keeps the time of its first notification. */
export async function markNotified(db: Queryable, ids: string[]): Promise<void> {
  await db.query('UPDATE signals SET notified_at = now() WHERE id = ANY($1::bigint[]) AND notified_at IS NULL', [ids]);
}

export interface SignalForMessage {
  id: string;
  url: string | null;
  authorHandle: string | null;
  source: string;
  text: string;
  score: number;
  category: string | null;
  sentiment: string | null;
  urgency: number | null;
  likes: number;
  reposts: number;
  replies: number;
  queryNames: string[];
}

/** The `limit` best of the given signals, highest score first. */
export async function signalsForMessage(db: Queryable, ids: string[], limit: number): Promise<SignalForMessage[]> {
  const { rows } = await db.query(
    `SELECT id::text, url, author_handle, source, text, score::text, category, sentiment, urgency, likes, reposts, replies, query_names
       FROM signals WHERE id = ANY($1::bigint[]) ORDER BY signals.score DESC NULLS LAST, signals.id LIMIT $2`,
    [ids, limit],
  );
  return rows.map((r) => ({
    id: r.id,
    url: r.url,
    authorHandle: r.author_handle,
    source: r.source,
    text: r.text,
    score: Number(r.score),
    category: r.category,
    sentiment: r.sentiment,
    urgency: r.urgency,
    likes: r.likes,
    reposts: r.reposts,
    replies: r.replies,
    queryNames: r.query_names,
  }));
}

export interface ContactSignal {
  signalId: string;
  email: string;
  name: string | null;
  company: string | null;
  source: string;
  url: string | null;
  score: number;
  category: string;
  text: string;
  authorHandle: string;
}

/**
 * Qualifying signals of the given queries, seen since `since` and with no
 * intake yet, whose author is a known contact: the best one per email, best
 * first.
 */
export async function contactSignals(
  db: Queryable,
  o: { threshold: number; categories: string[]; queryNames: string[]; since: string; limit: number },
): Promise<ContactSignal[]> {
  const { rows } = await db.query(
    `SELECT * FROM (
       SELECT DISTINCT ON (c.email) s.id::text AS signal_id, c.email, c.name, c.company, s.source, s.url, s.score::float AS score,
              s.category, s.text, s.author_handle
         FROM signals s
         JOIN signal_author_contacts c ON c.source = s.source AND c.author_handle = lower(s.author_handle)
        WHERE s.score >= $1 AND s.category = ANY($2::text[]) AND s.query_names && $3::text[]
          AND s.intake_workflow_id IS NULL AND s.last_seen_at >= $4
        ORDER BY c.email, s.score DESC) best
     ORDER BY score DESC LIMIT $5`,
    [o.threshold, o.categories, o.queryNames, o.since, o.limit],
  );
  return rows.map((r) => ({
    signalId: r.signal_id,
    email: r.email,
    name: r.name,
    company: r.company,
    source: r.source,
    url: r.url,
    score: r.score,
    category: r.category,
    text: r.text,
    authorHandle: r.author_handle,
  }));
}

/** Links a signal to the intake it started; the first link stays. */
export async function recordIntake(db: Queryable, signalId: string, workflowId: string): Promise<void> {
  await db.query('UPDATE signals SET intake_workflow_id = $2 WHERE id = $1 AND intake_workflow_id IS NULL', [signalId, workflowId]);
}

// ---- harvest runs ----------------------------------------------------------------------------------

export async function recordRunStart(pool: Pool, run: { runKey: string; workflowId: string; trigger: string }): Promise<string> {
  const { rows } = await pool.query<{ started_at: Date }>(
    `INSERT INTO harvest_runs (run_key, workflow_id, trigger) VALUES ($1, $2, $3)
     ON CONFLICT (run_key) DO UPDATE SET workflow_id = EXCLUDED.workflow_id
     RETURNING started_at`,
    [run.runKey, run.workflowId, run.trigger],
  );
  return rows[0]!.started_at.toISOString();
}

export async function recordRunEnd(pool: Pool, runKey: string, summary: Record<string, unknown>): Promise<void> {
  await pool.query('UPDATE harvest_runs SET finished_at = COALESCE(finished_at, now()), summary = $2 WHERE run_key = $1', [runKey, summary]);
}

export interface HarvestRunRow {
  runKey: string;
  workflowId: string;
  trigger: string;
  startedAt: string;
  finishedAt: string | null;
  summary: Record<string, unknown>;
}

export async function listRuns(pool: Pool, limit: number): Promise<HarvestRunRow[]> {
  const { rows } = await pool.query('SELECT * FROM harvest_runs ORDER BY started_at DESC LIMIT $1', [limit]);
  return rows.map((r) => ({
    runKey: r.run_key,
    workflowId: r.workflow_id,
    trigger: r.trigger,
    startedAt: r.started_at.toISOString(),
    finishedAt: r.finished_at?.toISOString() ?? null,
    summary: r.summary,
  }));
}

// ---- reads for the API and the CLI --------------------------------------------------------------------

export interface SignalView {
  id: string;
  source: string;
  externalId: string;
  url: string | null;
  author: { id: string | null; handle: string | null; name: string | null };
  text: string;
  lang: string | null;
  postedAt: string;
  firstSeenAt: string;
  lastSeenAt: string;
  queryNames: string[];
  metrics: { likes: number; reposts: number; replies: number; quotes: number };
  analysis: { category: string; sentiment: string; urgency: number; tags: string[]; reasoning: string | null; by: string | null; at: string } | null;
  score: number | null;
  scoredAt: string | null;
  notifiedAt: string | null;
  intakeWorkflowId: string | null;
}

const VIEW_COLUMNS = `id, source, external_id, url, author_id, author_handle, author_name, text, lang, posted_at, first_seen_at,
  last_seen_at, query_names, likes, reposts, replies, quotes, category, sentiment, urgency, tags, reasoning, analysed_by,
  analysed_at, score, scored_at, notified_at, intake_workflow_id`;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function toView(r: any): SignalView {
  return {
    id: String(r.id),
    source: r.source,
    externalId: r.external_id,
    url: r.url,
    author: { id: r.author_id, handle: r.author_handle, name: r.author_name },
    text: r.text,
    lang: r.lang,
    postedAt: r.posted_at.toISOString(),
    firstSeenAt: r.first_seen_at.toISOString(),
    lastSeenAt: r.last_seen_at.toISOString(),
    queryNames: r.query_names,
    metrics: { likes: r.likes, reposts: r.reposts, replies: r.replies, quotes: r.quotes },
    analysis: r.analysed_at
      ? { category: r.category, sentiment: r.sentiment, urgency: r.urgency, tags: r.tags, reasoning: r.reasoning, by: r.analysed_by, at: r.analysed_at.toISOString() }
      : null,
    score: r.score === null ? null : Number(r.score),
    scoredAt: r.scored_at?.toISOString() ?? null,
    notifiedAt: r.notified_at?.toISOString() ?? null,
    intakeWorkflowId: r.intake_workflow_id,
  };
}

export interface SignalFilter {
  minScore?: number;
  maxScore?: number;
  category?: string[];
  sentiment?: string;
  source?: string;
  queryName?: string;
  /** posted_at window (ISO). */
  since?: string;
  until?: string;
  notified?: boolean;
  text?: string;
}

export type SignalSort = 'recent' | 'score';

/** WHERE clause and parameters for a filter (parameters numbered from `start`). */
function where(f: SignalFilter, params: unknown[]): string {
  const parts: string[] = [];
  const add = (sql: string, value: unknown) => {
    params.push(value);
    parts.push(sql.replace('?', `$${params.length}`));
  };
  if (f.minScore !== undefined) add('score >= ?', f.minScore);
  if (f.maxScore !== undefined) add('score <= ?', f.maxScore);
  if (f.category?.length) add('category = ANY(?::text[])', f.category);
  if (f.sentiment) add('sentiment = ?', f.sentiment);
  if (f.source) add('source = ?', f.source);
  if (f.queryName) add('? = ANY(query_names)', f.queryName);
  if (f.since) add('posted_at >= ?', f.since);
  if (f.until) add('posted_at < ?', f.until);
  if (f.notified !== undefined) parts.push(f.notified ? 'notified_at IS NOT NULL' : 'notified_at IS NULL');
  if (f.text) add(`text ILIKE ?`, `%${f.text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
  return parts.length ? `WHERE ${parts.join(' AND ')}` : '';
}

export interface SignalPage {
  items: SignalView[];
  nextCursor: string | null;
  total?: number;
}

/**
 * Keyset pagination: the cursor holds the last row's sort key and id, so pages
 * stay stable while new signals arrive (unlike offsets).
 */
export async function listSignals(pool: Pool, o: { filter: SignalFilter; sort: SignalSort; limit: number; cursor?: string; withTotal?: boolean }): Promise<SignalPage> {
  const params: unknown[] = [];
  let clause = where(o.filter, params);
  const after = o.cursor ? decodeCursor(o.cursor, o.sort) : undefined;
  const conds: string[] = clause ? [clause.slice('WHERE '.length)] : [];
  if (o.sort === 'score') conds.push('score IS NOT NULL');
  if (after) {
    params.push(after.key, after.id);
    const k = `$${params.length - 1}`;
    const i = `$${params.length}`;
    conds.push(o.sort === 'score' ? `(score, id) < (${k}::numeric, ${i}::bigint)` : `(posted_at, id) < (${k}::timestamptz, ${i}::bigint)`);
  }
  clause = conds.length ? `WHERE ${conds.join(' AND ')}` : '';
  const order = o.sort === 'score' ? 'score DESC, id DESC' : 'posted_at DESC, id DESC';
  params.push(o.limit + 1);
  const { rows } = await pool.query(`SELECT ${VIEW_COLUMNS} FROM signals ${clause} ORDER BY ${order} LIMIT $${params.length}`, params);
  const more = rows.length > o.limit;
  const items = rows.slice(0, o.limit).map(toView);
  const last = items[items.length - 1];
  const nextCursor = more && last ? encodeCursor(o.sort, o.sort === 'score' ? String(last.score) : last.postedAt, last.id) : null;
  let total: number | undefined;
  if (o.withTotal) {
    const countParams: unknown[] = [];
    const countWhere = where(o.filter, countParams);
    const extra = o.sort === 'score' ? `${countWhere ? ' AND' : 'WHERE'} score IS NOT NULL` : '';
    total = (await pool.query(`SELECT count(*)::int AS n FROM signals ${countWhere}${extra}`, countParams)).rows[0].n;
  }
  return { items, nextCursor, ...(total !== undefined ? { total } : {}) };
}

export class BadCursorError extends Error {}

function encodeCursor(sort: SignalSort, key: string, id: string): string {
  return Buffer.from(JSON.stringify([sort, key, id])).toString('base64url');
}

function decodeCursor(cursor: string, sort: SignalSort): { key: string; id: string } {
  try {
    const [s, key, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as [string, string, string];
    if (s !== sort || typeof key !== 'string' || !/^\d+$/.test(id)) throw new Error('mismatch');
    if (sort === 'recent' && Number.isNaN(Date.parse(key))) throw new Error('bad time');
    if (sort === 'score' && !Number.isFinite(Number(key))) throw new Error('bad score');
    return { key, id };
  } catch {
    throw new BadCursorError(`cursor is not valid for sort=${sort} (use the nextCursor of the previous page with the same filters)`);
  }
}

export async function countSignals(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: string }>('SELECT count(*)::bigint AS n FROM signals');
  return Number(rows[0]!.n);
}

export async function getSignal(pool: Pool, id: string): Promise<SignalView | null> {
  const { rows } = await pool.query(`SELECT ${VIEW_COLUMNS} FROM signals WHERE id = $1`, [id]);
  return rows[0] ? toView(rows[0]) : null;
}

export async function topSignals(pool: Pool, o: { limit: number; since?: string; category?: string[]; minScore?: number }): Promise<SignalView[]> {
  const page = await listSignals(pool, { filter: { since: o.since, category: o.category, minScore: o.minScore }, sort: 'score', limit: o.limit });
  return page.items;
}

export interface SignalStats {
  total: number;
  analysed: number;
  unanalysed: number;
  scored: number;
  notified: number;
  qualifying: number;
  averageScore: number | null;
  byCategory: Record<string, number>;
  bySentiment: Record<string, number>;
  bySource: Record<string, number>;
  byAnalyser: Record<string, number>;
  scoreBuckets: { from: number; to: number; count: number }[];
  newestPostedAt: string | null;
  lastSeenAt: string | null;
  lastRun: HarvestRunRow | null;
}

export async function signalStats(pool: Pool, o: { since?: string; threshold: number }): Promise<SignalStats> {
  const params: unknown[] = [];
  const clause = where({ since: o.since }, params);
  params.push(o.threshold);
  const t = `$${params.length}`;
  const [totals, groups, buckets, runs] = await Promise.all([
    pool.query(
      `SELECT count(*)::int AS total, count(analysed_at)::int AS analysed, count(score)::int AS scored,
              count(notified_at)::int AS notified, count(*) FILTER (WHERE score >= ${t})::int AS qualifying,
              round(avg(score), 2)::float AS avg_score, max(posted_at) AS newest, max(last_seen_at) AS last_seen
         FROM signals ${clause}`,
      params,
    ),
    pool.query(
      `SELECT 'category' AS dim, coalesce(category, '(unanalysed)') AS key, count(*)::int AS n FROM signals ${clause} GROUP BY 2
       UNION ALL SELECT 'sentiment', coalesce(sentiment, '(unanalysed)'), count(*)::int FROM signals ${clause} GROUP BY 2
       UNION ALL SELECT 'source', source, count(*)::int FROM signals ${clause} GROUP BY 2
       UNION ALL SELECT 'analyser', coalesce(split_part(analysed_by, ':', 1), '(unanalysed)'), count(*)::int FROM signals ${clause} GROUP BY 2`,
      params.slice(0, -1),
    ),
    pool.query(
      `SELECT least(floor(score / 10), 9)::int AS bucket, count(*)::int AS n FROM signals ${clause}${clause ? ' AND' : ' WHERE'} score IS NOT NULL GROUP BY 1 ORDER BY 1`,
      params.slice(0, -1),
    ),
    listRuns(pool, 1),
  ]);
  const r = totals.rows[0];
  const dims: Record<string, Record<string, number>> = { category: {}, sentiment: {}, source: {}, analyser: {} };
  for (const g of groups.rows) dims[g.dim]![g.key] = g.n;
  const counts = new Map(buckets.rows.map((b) => [b.bucket as number, b.n as number]));
  return {
    total: r.total,
    analysed: r.analysed,
    unanalysed: r.total - r.analysed,
    scored: r.scored,
    notified: r.notified,
    qualifying: r.qualifying,
    averageScore: r.avg_score,
    byCategory: dims.category!,
    bySentiment: dims.sentiment!,
    bySource: dims.source!,
    byAnalyser: dims.analyser!,
    scoreBuckets: Array.from({ length: 10 }, (_, i) => ({ from: i * 10, to: i === 9 ? 100 : i * 10 + 10, count: counts.get(i) ?? 0 })),
    newestPostedAt: r.newest?.toISOString() ?? null,
    lastSeenAt: r.last_seen?.toISOString() ?? null,
    lastRun: runs[0] ?? null,
  };
}

// ---- restoring a snapshot ----------------------------------------------------------

const SIGNALS = 'signals';
/** A signal's natural key: the same post from the same source is one signal. */
export const SIGNAL_KEY = ['source', 'external_id'] as const;

/**
 * A snapshot restore (lib/ops/snapshots.ts), from rows staged in a temporary
 * table shaped like `columns`: the table ends up holding exactly those rows.
 */
export async function replaceSignals(client: pg.ClientBase, stage: string, columns: ColumnInfo[]) {
  const list = columns.map((c) => quoteIdent(c.name)).join(', ');
  const overriding = columns.some((c) => c.identity) ? ' OVERRIDING SYSTEM VALUE' : '';
  // DELETE, not TRUNCATE: readers keep seeing the old rows until the restore commits.
  await client.query(`DELETE FROM ${quoteIdent(SIGNALS)}`);
  const ins = await client.query(`INSERT INTO ${quoteIdent(SIGNALS)} (${list})${overriding} SELECT ${list} FROM ${stage}`);
  return { inserted: ins.rowCount ?? 0, updated: 0 };
}

/**
 * A merging snapshot restore: staged rows with a signal's natural key take
 * over its values (it keeps its id); the others are added, with their staged
 * id when it is free.
 */
export async function mergeSignals(client: pg.ClientBase, stage: string, columns: ColumnInfo[]) {
  const t = quoteIdent(SIGNALS);
  const keyMatch = (a: string, b: string) => SIGNAL_KEY.map((k) => `${a}.${quoteIdent(k)} = ${b}.${quoteIdent(k)}`).join(' AND ');
  // Surrogate ids (serial/identity) belong to the row already here; the natural key decides the match.
  const surrogates = columns.filter((c) => c.sequence || c.identity);
  const values = columns.filter((c) => !surrogates.includes(c) && !(SIGNAL_KEY as readonly string[]).includes(c.name));
  const updated = values.length
    ? await client.query(`UPDATE ${t} AS s SET ${values.map((c) => `${quoteIdent(c.name)} = r.${quoteIdent(c.name)}`).join(', ')} FROM ${stage} AS r WHERE ${keyMatch('s', 'r')}`)
    : { rowCount: 0 };

  const all = columns.map((c) => quoteIdent(c.name));
  const overriding = columns.some((c) => c.identity) ? ' OVERRIDING SYSTEM VALUE' : '';
  const isNew = `NOT EXISTS (SELECT 1 FROM ${t} AS s WHERE ${keyMatch('s', 'r')})`;
  const idFree = surrogates.map((c) => `NOT EXISTS (SELECT 1 FROM ${t} AS s WHERE s.${quoteIdent(c.name)} = r.${quoteIdent(c.name)})`);
  const withIds = await client.query(
    `INSERT INTO ${t} (${all.join(', ')})${overriding} SELECT ${all.map((c) => `r.${c}`).join(', ')} FROM ${stage} AS r WHERE ${[isNew, ...idFree].join(' AND ')}`,
  );
  let fresh = 0;
  if (surrogates.length) {
    await advanceSignalSequences(client, surrogates);
    // New rows whose id is taken by another row here get a fresh one.
    const rest = columns.filter((c) => !surrogates.includes(c)).map((c) => quoteIdent(c.name));
    const res = await client.query(`INSERT INTO ${t} (${rest.join(', ')}) SELECT ${rest.map((c) => `r.${c}`).join(', ')} FROM ${stage} AS r WHERE ${isNew}`);
    fresh = res.rowCount ?? 0;
  }
  return { inserted: (withIds.rowCount ?? 0) + fresh, updated: updated.rowCount ?? 0 };
}

/**
 * Moves the table's sequences past the largest id now present. They only move
 * forward on a snapshot restore: ids handed out before stay handed out.
 */
export async function advanceSignalSequences(client: pg.ClientBase, columns: ColumnInfo[]): Promise<void> {
  for (const c of columns.filter((c) => c.sequence)) {
    await resetSequence(client, SIGNALS, c.name, c.sequence!, await sequenceLastValue(client, c.sequence!));
  }
}
