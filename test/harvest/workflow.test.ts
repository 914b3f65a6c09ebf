import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProspectDomain } from '../../lib/domain/search-attributes.js';
import { isEncrypted } from '../../lib/config/payload-codec.js';
import { testPayloadCodec } from '../helpers/payload-keys.js';
import { COMPETITORS, harvestPosts, harvestStack, type HarvestStack } from './helpers.js';
import { INTAKE_WORKFLOW } from '../../workflows/intake/messages.js';

/**
 * The harvest workflow end to end on the real Temporal server, PostgreSQL and
 * the sandbox (X, OpenAI, Slack through their real SDKs).
 */

let seq = 0;
/** Tweets that qualify on any threshold up to ~90: buying intent, urgent, viral, fresh. */
function hotTweets(n: number, tag: string) {
  return Array.from({ length: n }, () => ({
    username: 'dana_revops',
    text: `Urgent: looking for an alternative to Outboundly for our team, evaluating options ${tag}-${++seq}`,
    age_minutes: 1,
    public_metrics: { like_count: 400, retweet_count: 40, reply_count: 30, quote_count: 5 },
  }));
}

async function addTweets(s: HarvestStack, tweets: object[]): Promise<string[]> {
  const res = await s.control.post<{ tweets: { id: string }[] }>('/_sandbox/x/tweets', tweets);
  return res.tweets.map((t) => t.id);
}

async function signalIdsFor(s: HarvestStack, externalIds: string[]): Promise<string[]> {
  const { rows } = await s.db.pool.query(`SELECT id::text FROM signals WHERE source = 'x' AND external_id = ANY($1) ORDER BY signals.id`, [externalIds]);
  return rows.map((r) => r.id);
}

describe('harvest workflow', () => {
  let s: HarvestStack;

  beforeAll(async () => {
    s = await harvestStack();
  });
  afterAll(() => s?.close());

  it('fetches, stores each tweet once, analyses in LLM batches, scores every signal and notifies each qualifying one once', async () => {
    const expected = await s.control.get<{ count: number; tweets: { id: string }[] }>(`/_sandbox/x/tweets?query=${encodeURIComponent(COMPETITORS.query!)}`);
    expect(expected.count).toBeGreaterThan(15);

    const summary = await s.run({ queries: [COMPETITORS], tuning: { notifyThreshold: 30, digestMin: 1000, batchSize: 20, pageSize: 10 } });
    expect(summary.queries).toEqual([expect.objectContaining({ name: 'competitors', stoppedBy: 'complete', fetched: expected.count, inserted: expected.count })]);
    expect(summary.queries[0]!.pages).toBe(Math.ceil(expected.count / 10));

    const { rows } = await s.db.pool.query(`SELECT external_id, analysed_by, score, notified_at, query_names FROM signals`);
    expect(rows.map((r) => r.external_id).sort()).toEqual(expected.tweets.map((t) => t.id).sort());
    expect(rows.every((r) => r.analysed_by === 'llm:gpt-4o-mini')).toBe(true);
    expect(rows.every((r) => r.score !== null)).toBe(true);
    expect(rows.every((r) => r.query_names.join() === 'competitors')).toBe(true);

    // At most one LLM call per 20 signals (batches of 20 here).
    const stats = await s.control.get<{ bySchema: Record<string, number> }>('/_sandbox/openai/stats');
    expect(stats.bySchema.signal_analysis).toBe(Math.ceil(expected.count / 20));
    expect(summary.totals.analysed).toMatchObject({ llm: expected.count, keywords: 0, llmCalls: Math.ceil(expected.count / 20) });

    const qualifying = rows.filter((r) => Number(r.score) >= 30);
    expect(qualifying.length).toBeGreaterThan(0);
    expect(rows.filter((r) => r.notified_at !== null).length).toBe(qualifying.length);
    const posts = await harvestPosts(s.control);
    expect(posts).toHaveLength(qualifying.length);
    expect(new Set(posts.map((p) => p.metadata!.event_payload.message_key)).size).toBe(qualifying.length);
    expect(posts.every((p) => p.channel === 'C0SIGNALS1')).toBe(true);
    expect(summary.totals.notified).toEqual({ messages: qualifying.length, signals: qualifying.length, recovered: 0 });

    // The cursor moved to the newest tweet: a second run fetches nothing and posts nothing.
    const { rows: cursor } = await s.db.pool.query(`SELECT cursor FROM source_cursors WHERE source = 'x' AND query_name = 'competitors'`);
    expect(cursor[0].cursor).toBe(expected.tweets[0]!.id);
    const again = await s.run({ queries: [COMPETITORS], tuning: { notifyThreshold: 30, digestMin: 1000 } });
    expect(again.totals).toMatchObject({ fetched: 0, inserted: 0, notified: { messages: 0, signals: 0 } });
    expect(await harvestPosts(s.control)).toHaveLength(qualifying.length);

    // Audit trail and run record.
    const audit = await s.db.pool.query(`SELECT outcome FROM audit_events WHERE action = 'harvest_run'`);
    expect(audit.rows).toHaveLength(2);
    const runs = await s.db.pool.query('SELECT finished_at FROM harvest_runs');
    expect(runs.rows.every((r) => r.finished_at !== null)).toBe(true);
  });

  it('posts exactly once when Slack applies the post but the answer is lost (the retry finds it by its metadata)', async () => {
    const ids = await addTweets(s, hotTweets(2, 'lost-answer'));
    await s.control.addFaults({ provider: 'slack', kind: 'apply_then_fail', match: 'chat.postMessage', count: 1, status: 500 });
    try {
      const summary = await s.run({ queries: [COMPETITORS], tuning: { notifyThreshold: 60, digestMin: 1000 } });
      expect(summary.totals.notified).toEqual({ messages: 2, signals: 2, recovered: 1 });
    } finally {
      await s.control.clearFaults('slack');
    }
    const signalIds = await signalIdsFor(s, ids);
    const posts = (await harvestPosts(s.control)).filter((p) => signalIds.some((id) => p.metadata!.event_payload.message_key === `signal:${id}`));
    expect(posts.map((p) => p.metadata!.event_payload.message_key).sort()).toEqual(signalIds.map((id) => `signal:${id}`).sort());
    const injected = (await s.control.stats()).injected.slack;
    expect(injected?.apply_then_fail).toBe(1);
    const { rows } = await s.db.pool.query('SELECT notified_at FROM signals WHERE id = ANY($1::bigint[])', [signalIds]);
    expect(rows.every((r) => r.notified_at !== null)).toBe(true);
  });

  it('sends one digest when many qualify, covering every qualifying signal', async () => {
    const ids = await addTweets(s, hotTweets(5, 'digest'));
    const summary = await s.run({ queries: [COMPETITORS], tuning: { notifyThreshold: 60, digestMin: 3, digestList: 2 } });
    expect(summary.totals.notified).toEqual({ messages: 1, signals: 5, recovered: 0 });
    const digest = (await harvestPosts(s.control)).filter((p) => p.metadata!.event_payload.kind === 'digest');
    expect(digest).toHaveLength(1);
    expect(digest[0]!.metadata!.event_payload.count).toBe(5);
    expect(digest[0]!.text).toMatch(/^5 new signals scored 60 or more/);
    const { rows } = await s.db.pool.query('SELECT count(*)::int AS n FROM signals WHERE id = ANY($1::bigint[]) AND notified_at IS NOT NULL', [await signalIdsFor(s, ids)]);
    expect(rows[0].n).toBe(5);
  });

  it('falls back to the keyword analyser when the LLM keeps failing, and still scores everything', async () => {
    const ids = await addTweets(s, hotTweets(3, 'llm-down'));
    await s.control.addFaults({ provider: 'openai', kind: 'error', status: 503 });
    let summary;
    try {
      summary = await s.run({ queries: [COMPETITORS], tuning: { notifyThreshold: 101 } });
    } finally {
      await s.control.clearFaults('openai');
    }
    expect(summary.totals.analysed).toMatchObject({ llm: 0, keywords: 3, fallbackBatches: 1, llmCalls: 0 });
    const { rows } = await s.db.pool.query('SELECT analysed_by, category, urgency, score FROM signals WHERE id = ANY($1::bigint[])', [await signalIdsFor(s, ids)]);
    expect(rows).toHaveLength(3);
    for (const r of rows) expect(r).toMatchObject({ analysed_by: 'keywords', category: 'buying_intent', urgency: 5 });
    expect(rows.every((r) => r.score !== null)).toBe(true);
    // The LLM was tried with backoff before giving up (3 attempts, all refused by the fault).
    expect((await s.control.stats()).injected.openai?.error).toBe(3);
  });

  it('keeps metrics monotonic and merges query names when another query sees the same tweet', async () => {
    const [id] = await addTweets(s, [{ username: 'marco_builds', text: `PipeNest vs Salesbolt, evaluating both ${++seq}`, age_minutes: 2, public_metrics: { like_count: 10 } }]);
    await s.run({ queries: [COMPETITORS] });
    await s.control.post(`/_sandbox/x/tweets/${id}/metrics`, { like_count: 50 });
    const second = { name: 'salesbolt', source: 'x' as const, query: 'Salesbolt' };
    await s.run({ queries: [second] });
    const { rows } = await s.db.pool.query(`SELECT likes, query_names FROM signals WHERE external_id = $1`, [id]);
    expect(rows).toEqual([{ likes: 50, query_names: ['competitors', 'salesbolt'] }]);
  });

  it('stops a query when the X budget is spent, keeps the window open, and the next run resumes it without gaps or duplicates', async () => {
    const query = { name: 'budget', source: 'x' as const, query: 'MailRaven -is:retweet' };
    await addTweets(
      s,
      Array.from({ length: 35 }, (_, i) => ({ username: 'claire_cs', text: `MailRaven deliverability note ${i} ${++seq}`, age_minutes: 3 })),
    );
    const total = (await s.control.get<{ count: number }>(`/_sandbox/x/tweets?query=${encodeURIComponent(query.query)}`)).count;
    await s.control.post('/_sandbox/x/rate-limit', { endpoint: 'search', limit: 2, windowSeconds: 900 });
    const first = await s.run({ queries: [query], tuning: { pageSize: 10 } });
    expect(first.queries[0]).toMatchObject({ stoppedBy: 'rate_limit', pages: 2, fetched: 20 });
    expect(Date.parse(first.queries[0]!.resetAt!)).toBeGreaterThan(Date.now() + 60_000);
    const open = await s.db.pool.query(`SELECT page_token FROM source_open_windows WHERE query_name = 'budget'`);
    expect(open.rows).toHaveLength(1);
    expect((await s.db.pool.query(`SELECT cursor FROM source_cursors WHERE query_name = 'budget'`)).rows).toHaveLength(0);
    // Exactly the budget was used: no request was spent on a 429.
    expect((await s.control.stats()).providers.x!.statuses['429']).toBeUndefined();

    await s.control.post('/_sandbox/x/rate-limit', { endpoint: 'search', limit: 450, windowSeconds: 900 });
    const second = await s.run({ queries: [query], tuning: { pageSize: 10 } });
    expect(second.queries[0]).toMatchObject({ stoppedBy: 'complete', fetched: total - 20 });
    const { rows } = await s.db.pool.query(`SELECT count(*)::int AS n FROM signals WHERE 'budget' = ANY(query_names)`);
    expect(rows[0].n).toBe(total);
    expect((await s.db.pool.query(`SELECT 1 FROM source_open_windows WHERE query_name = 'budget'`)).rows).toHaveLength(0);
  });

  it('continues as new when its history grows, and the run still completes with every signal stored once', async () => {
    const query = { name: 'long-run', source: 'x' as const, query: 'Salesbolt -is:retweet' };
    await addTweets(s, Array.from({ length: 60 }, (_, i) => ({ username: 'ae_kevin', text: `Salesbolt sequences thought ${i} ${++seq}`, age_minutes: 4 })));
    const total = (await s.control.get<{ count: number }>(`/_sandbox/x/tweets?query=${encodeURIComponent(query.query)}`)).count;
    const handle = await s.start({ queries: [query], tuning: { pageSize: 10, maxHistoryEvents: 40, chunkSize: 20, batchSize: 20, childConcurrency: 1 } });
    const summary = await handle.result();
    expect(summary.continuedAsNew).toBeGreaterThan(0);
    expect(summary.queries[0]).toMatchObject({ stoppedBy: 'complete', fetched: total });
    const { rows } = await s.db.pool.query(`SELECT count(*)::int AS n, count(analysed_at)::int AS a FROM signals WHERE 'long-run' = ANY(query_names)`);
    expect(rows[0]).toEqual({ n: total, a: total });
    const described = await handle.describe();
    expect(described.runId).not.toBe(summary.runKey);
  });

  it('starts a prospect intake by workflow type name for a qualifying signal whose author is a known contact', async () => {
    const [tweetId] = await addTweets(s, hotTweets(1, 'intake').map((t) => ({ ...t, username: 'priya_sdr' })));
    await s.db.pool.query(`INSERT INTO signal_author_contacts (source, author_handle, email, name, company) VALUES ('x', 'priya_sdr', 'priya@example.com', 'Priya Raman', 'Acme')`);
    const summary = await s.run({
      queries: [{ ...COMPETITORS, startIntake: true }],
      tuning: { notifyThreshold: 101, intakeThreshold: 60, intakeTaskQueue: `${s.taskQueue}-intake` },
    });
    expect(summary.totals.intakes).toEqual({ started: 1, skipped: 0 });
    const [signalId] = await signalIdsFor(s, [tweetId!]);
    const { rows } = await s.db.pool.query('SELECT intake_workflow_id FROM signals WHERE id = $1', [signalId]);
    // The intake's own id for the person (lib/domain/prospect.ts), so a person already in an intake is not started twice.
    expect(rows[0].intake_workflow_id).toBe('prospect-priya@example.com');
    const child = s.temporal.client.workflow.getHandle('prospect-priya@example.com');
    const history = await child.fetchHistory();
    const started = history.events![0]!.workflowExecutionStartedEventAttributes!;
    expect(started.workflowType!.name).toBe(INTAKE_WORKFLOW);
    // The input is encrypted in the history (lead notes are personal data); the deployment's key reads it.
    expect(isEncrypted(started.input!.payloads![0]!)).toBe(true);
    const [input] = await testPayloadCodec().decode([started.input!.payloads![0]!]);
    const payload = JSON.parse(Buffer.from(input!.data!).toString());
    expect(payload).toMatchObject({ lead: { email: 'priya@example.com', name: 'Priya Raman', company: 'Acme', source: 'signal' }, requestedBy: `harvest:${summary.runKey}` });
    expect(payload.lead.notes).toContain('looking for an alternative');
    expect((await child.describe()).typedSearchAttributes.get(ProspectDomain)).toBe('example.com');

    // A second qualifying signal by the same person while the intake runs attaches instead of starting another.
    await s.db.pool.query(`INSERT INTO signal_author_contacts (source, author_handle, email) VALUES ('x', 'jen_growth', 'Priya+x@Example.com')`);
    await addTweets(s, hotTweets(1, 'intake-2').map((t) => ({ ...t, username: 'jen_growth' })));
    const again = await s.run({ queries: [{ ...COMPETITORS, startIntake: true }], tuning: { notifyThreshold: 101, intakeThreshold: 60, intakeTaskQueue: `${s.taskQueue}-intake` } });
    expect(again.totals.intakes).toEqual({ started: 0, skipped: 1 });
    await child.terminate('test over');
  });
});
