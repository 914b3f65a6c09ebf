import type { Client } from '@xdevplatform/xdk';
import { searchRecent, XApiError, type XTweet, type XUser } from '../../providers/x.js';
import {
  SourceRateLimitedError,
  SourceRejectedError,
  type FetchedPage,
  type FetchRequest,
  type SignalInput,
  type SignalSource,
} from './types.js';

/**
 * X API v2 recent search as a signal source. The cursor is the newest tweet id
 * of the last complete window (sent as since_id); pages inside a window follow
 * meta.next_token, newest first. Rate-limit headers ride along so the caller
 * can stop when the budget is spent instead of spending 429s.
 */
export function xSource(client: Client): SignalSource {
  return {
    kind: 'x',
    stopOnKnownPage: false,
    async fetchPage(request: FetchRequest): Promise<FetchedPage> {
      if (!request.query.query) throw new SourceRejectedError(`query ${request.query.name} has no X search query`, 400);
      let page;
      try {
        page = await searchRecent(client, {
          query: request.query.query,
          sinceId: request.cursor ?? undefined,
          nextToken: request.pageToken,
          maxResults: request.pageSize,
        });
      } catch (err) {
        throw classify(err, request);
      }
      const authors = new Map(page.users.map((u) => [u.id, u]));
      return {
        signals: page.tweets.map((t) => toSignal(t, t.author_id ? authors.get(t.author_id) : undefined)),
        nextPageToken: page.meta.next_token,
        cursorCandidate: page.meta.newest_id,
        rateLimit: page.rateLimit,
        warnings: page.errors?.map((e) => e.detail ?? e.title ?? 'partial error'),
      };
    },
  };
}

function toSignal(t: XTweet, author: XUser | undefined): SignalInput {
  const m = t.public_metrics;
  return {
    source: 'x',
    externalId: t.id,
    url: author ? `https://x.com/${author.username}/status/${t.id}` : `https://x.com/i/web/status/${t.id}`,
    authorId: t.author_id,
    authorHandle: author?.username,
    authorName: author?.name,
    text: t.text,
    lang: t.lang,
    postedAt: t.created_at ?? new Date().toISOString(),
    metrics: { likes: m?.like_count ?? 0, reposts: m?.retweet_count ?? 0, replies: m?.reply_count ?? 0, quotes: m?.quote_count ?? 0 },
    raw: {
      conversation_id: t.conversation_id,
      referenced_tweets: t.referenced_tweets,
      public_metrics: t.public_metrics,
      author: author ? { id: author.id, username: author.username, verified: author.verified, followers: author.public_metrics?.followers_count } : undefined,
    },
  };
}

/** Rate limits and refusals become the source-level errors the harvest activity understands; the rest stays retryable. */
function classify(err: unknown, request: FetchRequest): Error {
  if (!(err instanceof XApiError)) return err as Error;
  if (err.status === 429) {
    const resetAt = err.rateLimit?.resetAt ?? Date.now() + 60_000;
    return new SourceRateLimitedError(err.message, resetAt);
  }
  if (err.status === 400 || err.status === 401 || err.status === 403 || err.status === 404) {
    const badToken = err.status === 400 && Boolean(request.pageToken) && /next_token|pagination_token/i.test(JSON.stringify(err.body ?? ''));
    return new SourceRejectedError(err.message, err.status, badToken);
  }
  return err;
}
