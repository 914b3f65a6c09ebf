import { ApiError, Client } from '@xdevplatform/xdk';
import type { Config } from '../../lib/config/config.js';

/**
 * X API v2 through the official SDK (@xdevplatform/xdk). The client takes a
 * base URL (the sandbox or https://api.x.com), adds the bearer token and
 * turns non-2xx answers into ApiError with status, headers and body.
 *
 * Recent search goes through `client.request(..., { raw: true })` rather than
 * `client.posts.searchRecent`: the raw Response is the only way the SDK hands
 * back the x-rate-limit-* headers of a successful call, and its generated
 * `searchRecent` spells the fields parameter `post.fields`, while the X API
 * documents `tweet.fields` (https://docs.x.com/x-api/fundamentals/fields).
 * Retries are left to Temporal: the SDK's `retry` option is off.
 */

type XConfig = Config['providers']['x'];

export interface XClientOptions {
  /** Per-request timeout; the SDK's default is 30 s. */
  timeoutMs?: number;
}

export function createX(cfg: XConfig, opts: XClientOptions = {}): Client {
  return new Client({
    bearerToken: cfg.bearerToken,
    baseUrl: cfg.baseUrl.replace(/\/+$/, ''),
    timeout: opts.timeoutMs ?? 30_000,
    retry: false,
  });
}

export interface XPublicMetrics {
  retweet_count: number;
  reply_count: number;
  like_count: number;
  quote_count: number;
  bookmark_count?: number;
  impression_count?: number;
}

export interface XTweet {
  id: string;
  text: string;
  author_id?: string;
  created_at?: string;
  lang?: string;
  conversation_id?: string;
  public_metrics?: XPublicMetrics;
  referenced_tweets?: { type: 'retweeted' | 'replied_to' | 'quoted'; id: string }[];
  edit_history_tweet_ids?: string[];
}

export interface XUser {
  id: string;
  username: string;
  name: string;
  verified?: boolean;
  public_metrics?: { followers_count: number; following_count: number; tweet_count: number; listed_count: number };
}

export interface XSearchMeta {
  result_count: number;
  newest_id?: string;
  oldest_id?: string;
  next_token?: string;
}

export interface XRateLimit {
  limit: number;
  remaining: number;
  /** When the window resets, epoch milliseconds. */
  resetAt: number;
}

/** Per-item problems X reports beside data in a 200 (e.g. a suspended author). */
export interface XPartialError {
  title?: string;
  detail?: string;
  type?: string;
  resource_id?: string;
  value?: string;
}

export interface SearchRecentInput {
  query: string;
  /** Only tweets newer than this id (the per-query cursor). */
  sinceId?: string;
  /** The previous page's meta.next_token. */
  nextToken?: string;
  /** 10–100; default 100 (fewest requests per signal). */
  maxResults?: number;
}

export interface SearchRecentPage {
  /** Newest first. */
  tweets: XTweet[];
  /** Authors of `tweets` (includes.users). */
  users: XUser[];
  meta: XSearchMeta;
  rateLimit: XRateLimit | null;
  errors?: XPartialError[];
}

/** An X API failure: `status` 0 means no answer (network error or timeout). */
export class XApiError extends Error {
  override readonly name = 'XApiError';
  constructor(
    message: string,
    readonly status: number,
    readonly rateLimit: XRateLimit | null,
    readonly body: unknown,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }

  /** Worth trying again later: rate limits, server errors and lost answers. */
  get retryable(): boolean {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

export const TWEET_FIELDS = ['id', 'text', 'author_id', 'created_at', 'public_metrics', 'lang', 'conversation_id', 'referenced_tweets'];
export const USER_FIELDS = ['username', 'name', 'public_metrics', 'verified'];

export async function searchRecent(client: Client, input: SearchRecentInput): Promise<SearchRecentPage> {
  const params = new URLSearchParams({
    query: input.query,
    max_results: String(input.maxResults ?? 100),
    expansions: 'author_id',
    'tweet.fields': TWEET_FIELDS.join(','),
    'user.fields': USER_FIELDS.join(','),
  });
  if (input.sinceId) params.set('since_id', input.sinceId);
  if (input.nextToken) params.set('next_token', input.nextToken);

  let response: Response;
  try {
    response = await client.request<Response>('GET', `/2/tweets/search/recent?${params}`, {
      raw: true,
      security: [{ BearerToken: [] }],
    });
  } catch (err) {
    throw toXApiError(err);
  }
  const body = (await response.json()) as {
    data?: XTweet[];
    includes?: { users?: XUser[] };
    meta?: XSearchMeta;
    errors?: XPartialError[];
  };
  return {
    tweets: body.data ?? [],
    users: body.includes?.users ?? [],
    meta: body.meta ?? { result_count: body.data?.length ?? 0 },
    rateLimit: readRateLimit(response.headers),
    ...(body.errors?.length ? { errors: body.errors } : {}),
  };
}

export function readRateLimit(headers: Headers): XRateLimit | null {
  const limit = Number(headers.get('x-rate-limit-limit'));
  const remaining = Number(headers.get('x-rate-limit-remaining'));
  const reset = Number(headers.get('x-rate-limit-reset'));
  if (!headers.has('x-rate-limit-reset') || !Number.isFinite(reset)) return null;
  return { limit: Number.isFinite(limit) ? limit : 0, remaining: Number.isFinite(remaining) ? remaining : 0, resetAt: reset * 1000 };
}

function toXApiError(err: unknown): XApiError {
  if (!(err instanceof ApiError)) return new XApiError((err as Error)?.message ?? String(err), 0, null, undefined, { cause: err });
  const body = err.data as { title?: string; detail?: string; errors?: { message?: string }[] } | undefined;
  const what = body?.errors?.[0]?.message ?? body?.detail ?? body?.title ?? err.statusText;
  const message = err.status === 0 ? `X API unreachable: ${err.message}` : `X API ${err.status}: ${what}`;
  return new XApiError(message, err.status, readRateLimit(err.headers), err.status === 0 ? undefined : err.data, { cause: err });
}
