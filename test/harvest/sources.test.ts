import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import type { HarvestActivities } from '../../activities/harvest/index.js';
import { readCursor, upsertSignals } from '../../lib/store/signals.js';
import { parseFeed } from '../../activities/harvest/sources/feed.js';
import type { SignalInput, SourceQuery } from '../../activities/harvest/sources/types.js';
import type { SandboxClient } from '../../sandbox/client.js';
import type { Sandbox } from '../../sandbox/server.js';
import type { FetchPageInput, FetchPageResult } from '../../lib/domain/harvest.js';
import type { testDatabase } from '../helpers/stack.js';
import { harvestActivitiesStack } from './helpers.js';

/**
 * The store (upsert monotonicity), and the sources through the fetch-page
 * activity: X recent search (the official SDK against the sandbox) with its
 * since_id cursor, pagination and rate limits; RSS/Atom feeds from a small
 * HTTP server in this test.
 */

let db: Awaited<ReturnType<typeof testDatabase>>;
let sandbox: Sandbox;
let control: SandboxClient;
let acts: HarvestActivities;
let withSettings: Awaited<ReturnType<typeof harvestActivitiesStack>>['withSettings'];

beforeAll(async () => {
  ({ db, sandbox, control, acts, withSettings } = await harvestActivitiesStack());
});
afterAll(async () => {
  await sandbox?.close();
  await db?.drop();
});

/** Pages through one query the way the workflow does; returns each page's result. */
async function harvestQuery(query: SourceQuery, o: Partial<FetchPageInput> = {}): Promise<FetchPageResult[]> {
  const pages: FetchPageResult[] = [];
  let input: FetchPageInput = { runKey: 'test', query, page: 0, pageSize: 10, maxPages: 100, rateLimitMaxWaitMs: 5_000, ...o };
  for (;;) {
    const r = await acts.harvestFetchPage(input);
    pages.push(r);
    if (!r.next) return pages;
    input = { ...input, page: input.page + 1, window: r.next };
  }
}

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a failure');
    },
    (e: unknown) => e,
  );
}

describe('signal store upsert', () => {
  const signal = (id: string, metrics: Partial<SignalInput['metrics']>, extra: Partial<SignalInput> = {}): SignalInput => ({
    source: 'x',
    externalId: id,
    text: `text of ${id}`,
    postedAt: '2026-01-01T00:00:00Z',
    metrics: { likes: 0, reposts: 0, replies: 0, quotes: 0, ...metrics },
    raw: {},
    ...extra,
  });
  const row = async (id: string) => (await db.pool.query(`SELECT likes, reposts, replies, quotes, query_names, text, last_seen_at FROM signals WHERE external_id = $1`, [id])).rows[0];

  it('keeps one row per external id; metrics only rise; query names merge; the first text stays', async () => {
    expect(await upsertSignals(db.pool, [signal('m1', { likes: 10, reposts: 5, replies: 3, quotes: 1 })], 'alpha')).toEqual({ inserted: 1, updated: 0 });
    const first = await row('m1');
    expect(await upsertSignals(db.pool, [signal('m1', { likes: 4, reposts: 9, replies: 0, quotes: 1 }, { text: 'edited' })], 'beta')).toEqual({ inserted: 0, updated: 1 });
    const second = await row('m1');
    expect(second).toMatchObject({ likes: 10, reposts: 9, replies: 3, quotes: 1, query_names: ['alpha', 'beta'], text: 'text of m1' });
    expect(second.last_seen_at.getTime()).toBeGreaterThanOrEqual(first.last_seen_at.getTime());
    await upsertSignals(db.pool, [signal('m1', {})], 'alpha');
    expect(await row('m1')).toMatchObject({ likes: 10, reposts: 9, replies: 3, quotes: 1, query_names: ['alpha', 'beta'] });
  });

  it('takes a page listing the same post twice (keeping the higher metrics) and the same id from another source apart', async () => {
    const out = await upsertSignals(db.pool, [signal('d1', { likes: 1 }), signal('d1', { likes: 7 }), signal('d1', { likes: 2 }, { source: 'feed' })], 'alpha');
    expect(out).toEqual({ inserted: 2, updated: 0 });
    const { rows } = await db.pool.query(`SELECT source, likes FROM signals WHERE external_id = 'd1' ORDER BY source`);
    expect(rows).toEqual([
      { source: 'feed', likes: 2 },
      { source: 'x', likes: 7 },
    ]);
  });
});

describe('X recent-search source', () => {
  beforeEach(async () => {
    await control.reset('x');
    await control.clearFaults();
    await db.pool.query('TRUNCATE signals, source_cursors, source_open_windows');
  });

  const query: SourceQuery = { name: 'pipenest', source: 'x', query: 'PipeNest -is:retweet' };

  it('follows next_token to the end of the window, then stores the newest id as the since_id cursor', async () => {
    await control.post('/_sandbox/x/tweets', Array.from({ length: 25 }, (_, i) => ({ username: 'opsgeek_tom', text: `PipeNest status note ${i}`, age_minutes: 30 - i })));
    const matching = await control.get<{ count: number; tweets: { id: string }[] }>(`/_sandbox/x/tweets?query=${encodeURIComponent(query.query!)}`);
    const pages = await harvestQuery(query);
    expect(pages.length).toBe(Math.ceil(matching.count / 10));
    expect(pages.reduce((n, p) => n + p.inserted, 0)).toBe(matching.count);
    expect(pages.at(-1)!.stoppedBy).toBe('complete');
    expect(await readCursor(db.pool, 'x', 'pipenest')).toBe(matching.tweets[0]!.id);
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM signals WHERE 'pipenest' = ANY(query_names)`);
    expect(rows[0].n).toBe(matching.count);

    // Next run: only what is newer than the cursor, in one request.
    const before = (await control.stats()).providers.x!.requests;
    const [fresh] = (await control.post<{ tweets: { id: string }[] }>('/_sandbox/x/tweets', { username: 'ae_kevin', text: 'PipeNest is down again', age_minutes: 0 })).tweets;
    const next = await harvestQuery(query);
    expect(next).toEqual([expect.objectContaining({ fetched: 1, inserted: 1, stoppedBy: 'complete' })]);
    expect((await control.stats()).providers.x!.requests - before).toBe(1);
    expect(await readCursor(db.pool, 'x', 'pipenest')).toBe(fresh!.id);
    // Nothing new: the cursor stays.
    expect(await harvestQuery(query)).toEqual([expect.objectContaining({ fetched: 0, stoppedBy: 'complete' })]);
    expect(await readCursor(db.pool, 'x', 'pipenest')).toBe(fresh!.id);
  });

  it('stops when x-rate-limit-remaining reaches 0, and resumes the open window in the next run', async () => {
    await control.post('/_sandbox/x/tweets', Array.from({ length: 30 }, (_, i) => ({ username: 'opsgeek_tom', text: `PipeNest budget ${i}`, age_minutes: 40 - i })));
    const total = (await control.get<{ count: number }>(`/_sandbox/x/tweets?query=${encodeURIComponent(query.query!)}`)).count;
    await control.post('/_sandbox/x/rate-limit', { endpoint: 'search', limit: 2, windowSeconds: 600 });
    const first = await harvestQuery(query);
    expect(first).toHaveLength(2);
    expect(first[1]).toMatchObject({ stoppedBy: 'rate_limit' });
    expect(Date.parse(first[1]!.resetAt!)).toBeGreaterThan(Date.now() + 500_000);
    expect(await readCursor(db.pool, 'x', 'pipenest')).toBeNull();

    await control.post('/_sandbox/x/rate-limit', { endpoint: 'search', limit: 450 });
    const second = await harvestQuery(query);
    expect(second.reduce((n, p) => n + p.inserted, 0)).toBe(total - 20);
    expect(second.at(-1)!.stoppedBy).toBe('complete');
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n, count(DISTINCT external_id)::int AS d FROM signals`);
    expect(rows[0]).toEqual({ n: total, d: total });
    expect(await readCursor(db.pool, 'x', 'pipenest')).not.toBeNull();
  });

  it('stops at the page cap with the window open, and resumes it', async () => {
    await control.post('/_sandbox/x/tweets', Array.from({ length: 25 }, (_, i) => ({ username: 'opsgeek_tom', text: `PipeNest cap ${i}`, age_minutes: 30 - i })));
    const first = await harvestQuery(query, { maxPages: 1 });
    expect(first).toEqual([expect.objectContaining({ fetched: 10, stoppedBy: 'page_cap' })]);
    const rest = await harvestQuery(query);
    expect(rest.at(-1)!.stoppedBy).toBe('complete');
    const total = (await control.get<{ count: number }>(`/_sandbox/x/tweets?query=${encodeURIComponent(query.query!)}`)).count;
    expect((await db.pool.query('SELECT count(*)::int AS n FROM signals')).rows[0].n).toBe(total);
  });

  it('waits out a short 429 with the Retry-After as the retry delay, and stops the query on a long one', async () => {
    await control.addFaults({ provider: 'x', kind: 'rate_limit', retryAfterSeconds: 2, count: 1 });
    const short = await failure(acts.harvestFetchPage({ runKey: 't', query, page: 0, pageSize: 10, maxPages: 10, rateLimitMaxWaitMs: 5_000 }));
    expect(short).toBeInstanceOf(ApplicationFailure);
    expect((short as ApplicationFailure).type).toBe('SourceRateLimited');
    expect(Number((short as ApplicationFailure).nextRetryDelay)).toBeGreaterThan(500);
    expect(Number((short as ApplicationFailure).nextRetryDelay)).toBeLessThanOrEqual(2_000);

    await control.addFaults({ provider: 'x', kind: 'rate_limit', retryAfterSeconds: 900, count: 1 });
    const long = await acts.harvestFetchPage({ runKey: 't', query, page: 0, pageSize: 10, maxPages: 10, rateLimitMaxWaitMs: 5_000 });
    expect(long).toMatchObject({ fetched: 0, stoppedBy: 'rate_limit' });
    expect(long.next).toBeUndefined();
  });

  it('leaves 5xx retryable and makes a bad query non-retryable', async () => {
    await control.addFaults({ provider: 'x', kind: 'error', status: 503, count: 1 });
    const server = await failure(acts.harvestFetchPage({ runKey: 't', query, page: 0, pageSize: 10, maxPages: 10, rateLimitMaxWaitMs: 5_000 }));
    expect(server).not.toBeInstanceOf(ApplicationFailure);
    expect((server as { status: number }).status).toBe(503);

    const bad = await failure(acts.harvestFetchPage({ runKey: 't', query: { name: 'bad', source: 'x', query: '"unclosed' }, page: 0, pageSize: 10, maxPages: 10, rateLimitMaxWaitMs: 5_000 }));
    expect(bad).toMatchObject({ type: 'SourceRejected', nonRetryable: true });
    expect((bad as Error).message).toContain('X API 400');
  });
});

describe('RSS/Atom feed source', () => {
  let server: Server;
  let base: string;
  let hits: { path: string; ifNoneMatch?: string }[] = [];
  const atomPage = (page: number, entries: number[], next?: number) => `<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Vendor status</title>
  ${next ? `<link rel="next" href="/atom?page=${next}"/>` : ''}
  ${entries
    .map(
      (n) => `<entry>
    <id>urn:uuid:entry-${n}</id>
    <title type="html">PipeNest incident &amp; outage ${n}</title>
    <link rel="alternate" href="https://status.example/incidents/${n}"/>
    <published>2026-01-0${(n % 9) + 1}T10:00:00Z</published>
    <author><name>Status Bot</name><email>status@pipenest.example</email></author>
    <summary type="html">&lt;p&gt;The API is &lt;b&gt;down&lt;/b&gt; for some customers.&lt;/p&gt;</summary>
  </entry>`,
    )
    .join('\n')}
</feed>`;
  const rss = `<?xml version="1.0"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:content="http://purl.org/rss/1.0/modules/content/">
  <channel>
    <title>SaaS Weekly</title>
    <link>https://saasweekly.example/</link>
    <item>
      <title>Teams are looking for an alternative to Outboundly</title>
      <link>https://saasweekly.example/212</link>
      <guid isPermaLink="false">212</guid>
      <pubDate>Mon, 05 Jan 2026 09:00:00 GMT</pubDate>
      <dc:creator>Jen Alvarez</dc:creator>
      <description><![CDATA[<p>Pricing went up <em>40%</em>.</p>]]></description>
    </item>
    <item>
      <title>No guid here</title>
      <link>https://saasweekly.example/213</link>
      <author>editor@saasweekly.example (The Editor)</author>
      <description>Plain text</description>
    </item>
  </channel>
</rss>`;

  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const url = new URL(req.url!, 'http://x');
      hits.push({ path: `${url.pathname}${url.search}`, ifNoneMatch: req.headers['if-none-match'] as string | undefined });
      if (url.pathname === '/rss') {
        if (req.headers['if-none-match'] === '"rss-v1"') return void res.writeHead(304).end();
        return void res.writeHead(200, { 'content-type': 'application/rss+xml', etag: '"rss-v1"' }).end(rss);
      }
      if (url.pathname === '/atom') {
        const page = Number(url.searchParams.get('page') ?? 1);
        const body = page === 1 ? atomPage(1, [5, 4, 3], 2) : atomPage(2, [2, 1]);
        return void res.writeHead(200, { 'content-type': 'application/atom+xml' }).end(body);
      }
      if (url.pathname === '/broken') return void res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body>not a feed</body></html>');
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    // The feed server is on loopback, which feeds may only reach when allow-listed (test/harvest/safe-fetch.test.ts refuses it).
    acts = await withSettings({ OUTBOUND_ALLOW_HOSTS: new URL(base).host });
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
  beforeEach(() => {
    hits = [];
  });

  it('reads RSS 2.0 items: text without HTML, ids made unique per feed, authors; an unchanged feed costs a 304', async () => {
    const query: SourceQuery = { name: 'saas-weekly', source: 'feed', url: `${base}/rss` };
    const [page] = await harvestQuery(query);
    expect(page).toMatchObject({ fetched: 2, inserted: 2, stoppedBy: 'complete' });
    const { rows } = await db.pool.query(`SELECT external_id, text, url, author_handle, author_name, posted_at FROM signals WHERE source = 'feed' AND 'saas-weekly' = ANY(query_names) ORDER BY external_id`);
    expect(rows[0]).toMatchObject({
      external_id: `${base}/rss#212`,
      text: 'Teams are looking for an alternative to Outboundly\nPricing went up 40%.',
      author_name: 'Jen Alvarez',
      author_handle: 'jen alvarez',
    });
    expect(rows[0].posted_at.toISOString()).toBe('2026-01-05T09:00:00.000Z');
    expect(rows[1]).toMatchObject({ external_id: 'https://saasweekly.example/213', author_handle: 'editor@saasweekly.example', author_name: 'The Editor' });
    expect(JSON.parse((await readCursor(db.pool, 'feed', 'saas-weekly'))!)).toEqual({ etag: '"rss-v1"' });

    const again = await harvestQuery(query);
    expect(again).toEqual([expect.objectContaining({ fetched: 0, stoppedBy: 'complete' })]);
    expect(hits.at(-1)).toEqual({ path: '/rss', ifNoneMatch: '"rss-v1"' });
  });

  it('follows Atom rel="next" pages, and stops at the first page that brings nothing new', async () => {
    const query: SourceQuery = { name: 'status', source: 'feed', url: `${base}/atom` };
    const pages = await harvestQuery(query);
    expect(pages.map((p) => p.inserted)).toEqual([3, 2]);
    expect(hits.map((h) => h.path)).toEqual(['/atom', '/atom?page=2']);
    const { rows } = await db.pool.query(`SELECT external_id, text, url, author_handle FROM signals WHERE 'status' = ANY(query_names) ORDER BY external_id`);
    expect(rows).toHaveLength(5);
    expect(rows[0]).toEqual({
      external_id: 'urn:uuid:entry-1',
      text: 'PipeNest incident & outage 1\nThe API is down for some customers.',
      url: 'https://status.example/incidents/1',
      author_handle: 'status@pipenest.example',
    });
    hits = [];
    const again = await harvestQuery(query);
    expect(again).toEqual([expect.objectContaining({ fetched: 3, inserted: 0, stoppedBy: 'complete' })]);
    expect(hits.map((h) => h.path)).toEqual(['/atom']);
  });

  it('refuses what is not a feed, without retrying', async () => {
    const err = await failure(acts.harvestFetchPage({ runKey: 't', query: { name: 'broken', source: 'feed', url: `${base}/broken` }, page: 0, pageSize: 10, maxPages: 5, rateLimitMaxWaitMs: 1_000 }));
    expect(err).toMatchObject({ type: 'SourceRejected', nonRetryable: true });
    expect(() => parseFeed('<html><body>not a feed</body></html>', 'u')).toThrow(/neither RSS nor Atom/);
  });
});
