import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Client } from '@xdevplatform/xdk';
import { createX, searchRecent, XApiError, type SearchRecentPage, type XTweet } from '../../activities/providers/x.js';
import { loadConfig, type Config } from '../../lib/config/config.js';
import type { SandboxClient } from '../../sandbox/client.js';
import type { Sandbox } from '../../sandbox/server.js';
import { testSandbox } from '../helpers/stack.js';

/** The official X SDK (@xdevplatform/xdk) against the sandbox's X API v2. */

const newestFirst = (tweets: XTweet[]) => tweets.every((t, i) => i === 0 || BigInt(t.id) < BigInt(tweets[i - 1]!.id));

async function failure(promise: Promise<unknown>): Promise<XApiError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(XApiError);
  return err as XApiError;
}

/** Follows next_token to the end; returns every page. */
async function allPages(client: Client, query: string, maxResults = 100): Promise<SearchRecentPage[]> {
  const pages: SearchRecentPage[] = [];
  let nextToken: string | undefined;
  do {
    const page = await searchRecent(client, { query, maxResults, nextToken });
    pages.push(page);
    nextToken = page.meta.next_token;
  } while (nextToken);
  return pages;
}

describe('sandbox: X API v2', () => {
  let sandbox: Sandbox;
  let control: SandboxClient;
  let cfg: Config['providers']['x'];
  let x: Client;

  beforeAll(async () => {
    ({ sandbox, client: control } = await testSandbox());
    cfg = (await loadConfig({ env: {}, overrides: { SANDBOX_URL: sandbox.url } })).providers.x;
    x = createX(cfg);
  });
  afterAll(() => sandbox?.close());
  beforeEach(async () => {
    await control.reset('x');
    await control.clearFaults('x');
  });

  it('searches recent tweets: matches, newest first, authors in includes.users, rate-limit headers', async () => {
    const page = await searchRecent(x, { query: 'Outboundly (alternative OR replacing) -is:retweet', maxResults: 10 });
    expect(page.tweets.length).toBeGreaterThanOrEqual(3);
    expect(newestFirst(page.tweets)).toBe(true);
    for (const t of page.tweets) {
      expect(t.text.toLowerCase()).toContain('outboundly');
      expect(t.text).toMatch(/alternative|replacing/i);
      expect(t.text.startsWith('RT @')).toBe(false);
      expect(t.public_metrics?.like_count).toBeTypeOf('number');
      expect(Date.parse(t.created_at!)).toBeGreaterThan(Date.now() - 7 * 86_400_000);
    }
    const authors = new Map(page.users.map((u) => [u.id, u]));
    for (const t of page.tweets) expect(authors.get(t.author_id!)?.username).toMatch(/^\w+$/);
    expect(page.meta).toMatchObject({ result_count: page.tweets.length, newest_id: page.tweets[0]!.id, oldest_id: page.tweets.at(-1)!.id });
    expect(page.meta.next_token).toBeUndefined();
    expect(page.rateLimit).toMatchObject({ limit: 450, remaining: 449 });
    expect(page.rateLimit!.resetAt).toBeGreaterThan(Date.now());

    const phrase = await searchRecent(x, { query: '"looking for an alternative" lang:en' });
    expect(phrase.tweets.length).toBeGreaterThan(0);
    expect(phrase.tweets.every((t) => /looking for an alternative/i.test(t.text) && t.lang === 'en')).toBe(true);

    const fromUser = await searchRecent(x, { query: 'from:opsgeek_tom PipeNest' });
    expect(new Set(fromUser.tweets.map((t) => t.author_id))).toEqual(new Set([fromUser.users[0]!.id]));
    expect(fromUser.users.map((u) => u.username)).toEqual(['opsgeek_tom']);

    expect(await searchRecent(x, { query: 'zzzunmatchedzzz' })).toMatchObject({ tweets: [], users: [], meta: { result_count: 0 } });
  });

  it('since_id returns only newer tweets, including ones added after the first fetch', async () => {
    const first = await searchRecent(x, { query: 'PipeNest', maxResults: 10 });
    const cursor = first.tweets[2]!.id;
    const newer = await searchRecent(x, { query: 'PipeNest', sinceId: cursor });
    expect(newer.tweets.map((t) => t.id)).toEqual(first.tweets.slice(0, 2).map((t) => t.id));

    const added = await control.post<{ tweets: { id: string }[] }>('/_sandbox/x/tweets', {
      username: 'new_prospect',
      text: 'PipeNest just lost our data. Looking for an alternative today.',
    });
    const afterAdd = await searchRecent(x, { query: 'PipeNest', sinceId: first.meta.newest_id });
    expect(afterAdd.tweets.map((t) => t.id)).toEqual([added.tweets[0]!.id]);
    expect(afterAdd.users.map((u) => u.username)).toEqual(['new_prospect']);
    expect(BigInt(added.tweets[0]!.id)).toBeGreaterThan(BigInt(first.meta.newest_id!));
  });

  it('walks every page through next_token without duplicates or gaps', async () => {
    const query = 'PipeNest OR Outboundly OR MailRaven OR Salesbolt OR Prospector';
    const pages = await allPages(x, query, 10);
    expect(pages.length).toBeGreaterThan(2);
    const ids = pages.flatMap((p) => p.tweets.map((t) => t.id));
    expect(new Set(ids).size).toBe(ids.length);
    expect(newestFirst(pages.flatMap((p) => p.tweets))).toBe(true);
    const expected = await control.get<{ count: number; tweets: { id: string }[] }>(`/_sandbox/x/tweets?query=${encodeURIComponent(query)}`);
    expect(ids).toEqual(expected.tweets.map((t) => t.id));
    expect(pages.at(-1)!.meta.next_token).toBeUndefined();
  });

  it('surfaces an injected 429 with its status and reset time', async () => {
    await control.addFaults({ provider: 'x', kind: 'rate_limit', match: '/x/2/tweets/search/recent', retryAfterSeconds: 120, count: 1 });
    const before = Date.now();
    const err = await failure(searchRecent(x, { query: 'PipeNest' }));
    expect(err.status).toBe(429);
    expect(err.retryable).toBe(true);
    expect(err.body).toMatchObject({ title: 'Too Many Requests', status: 429 });
    expect(err.rateLimit?.remaining).toBe(0);
    expect(err.rateLimit!.resetAt).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 119_000);
    expect(err.rateLimit!.resetAt).toBeLessThanOrEqual(before + 122_000);
    await expect(searchRecent(x, { query: 'PipeNest' })).resolves.toMatchObject({ meta: { result_count: expect.any(Number) } });
  });

  it('answers 429 once the endpoint budget is spent, until the window resets', async () => {
    await control.post('/_sandbox/x/rate-limit', { endpoint: 'search', limit: 2, windowSeconds: 60 });
    const one = await searchRecent(x, { query: 'PipeNest' });
    const two = await searchRecent(x, { query: 'PipeNest' });
    expect([one.rateLimit?.remaining, two.rateLimit?.remaining]).toEqual([1, 0]);
    const err = await failure(searchRecent(x, { query: 'PipeNest' }));
    expect(err.status).toBe(429);
    expect(err.rateLimit).toEqual({ limit: 2, remaining: 0, resetAt: one.rateLimit!.resetAt });
    // Other endpoints keep their own budget.
    const user = await x.users.getByUsername('dana_revops', { userFields: ['public_metrics', 'verified'] });
    expect(user.data).toMatchObject({ username: 'dana_revops', verified: true });
  });

  it('surfaces injected 5xx, 401 and 400 with their status', async () => {
    await control.addFaults({ provider: 'x', kind: 'error', status: 503, match: 'search/recent', count: 1 });
    const unavailable = await failure(searchRecent(x, { query: 'PipeNest' }));
    expect(unavailable).toMatchObject({ status: 503, retryable: true, body: { title: 'Service Unavailable', status: 503 } });

    const unauthorized = await failure(searchRecent(createX({ ...cfg, bearerToken: ' ' }), { query: 'PipeNest' }));
    expect(unauthorized).toMatchObject({ status: 401, retryable: false, body: { title: 'Unauthorized' } });

    const invalid = await failure(searchRecent(x, { query: 'PipeNest', maxResults: 5 }));
    expect(invalid.status).toBe(400);
    expect(invalid.message).toMatch(/max_results.*between 10 and 100/);
    expect(invalid.body).toMatchObject({ title: 'Invalid Request', errors: [{ parameters: { max_results: ['5'] } }] });

    const badQuery = await failure(searchRecent(x, { query: '(PipeNest OR' }));
    expect(badQuery.status).toBe(400);
    expect(await failure(searchRecent(x, { query: '-is:retweet' }))).toMatchObject({ status: 400 });
  });

  it('harvests 10,000 generated tweets through pagination quickly', async () => {
    const generated = await control.post<{ generated: number; total: number }>('/_sandbox/x/generate', {
      count: 10_000,
      seed: 7,
      terms: ['Zephyrloom'],
      authors: 200,
    });
    expect(generated.generated).toBe(10_000);

    const started = performance.now();
    const pages = await allPages(x, 'Zephyrloom', 100);
    const elapsed = performance.now() - started;
    const ids = pages.flatMap((p) => p.tweets.map((t) => t.id));
    console.log(`x sandbox: ${ids.length} tweets in ${pages.length} pages, ${elapsed.toFixed(0)} ms`);

    expect(ids.length).toBe(10_000);
    expect(new Set(ids).size).toBe(10_000);
    expect(pages.length).toBe(100);
    expect(new Set(pages.flatMap((p) => p.users.map((u) => u.id))).size).toBeLessThanOrEqual(200);
    expect(elapsed).toBeLessThan(10_000);

    // Same seed, same tweets: the 3 newest repeat the 3 oldest of the first run.
    await control.post('/_sandbox/x/generate', { count: 3, seed: 7, terms: ['Zephyrloom'], authors: 200 });
    const all = await control.get<{ tweets: { text: string; author_id: string }[] }>('/_sandbox/x/tweets?query=Zephyrloom');
    const shape = (t: { text: string; author_id: string }) => `${t.author_id} ${t.text}`;
    expect(all.tweets.slice(0, 3).map(shape)).toEqual(all.tweets.slice(-3).map(shape));
  });
});
