/**
 * What a signal source is: something that, given a query and where the last
 * complete read ended (its cursor), hands back pages of public posts. X
 * recent search and RSS/Atom feeds implement it; a Hacker News source would
 * too. Sources do no storage: the harvest activity upserts what they return
 * and moves the cursor only once a window has been read to its end.
 */

export type { SignalInput, SignalMetrics, SourceKind, SourceQuery } from '../../../lib/domain/harvest.js';
import type { SignalInput, SourceKind, SourceQuery } from '../../../lib/domain/harvest.js';

export interface FetchRequest {
  query: SourceQuery;
  /** Where the last complete window ended (X: since_id); null on the first harvest. */
  cursor: string | null;
  /** Continuation inside the current window (X: next_token; feeds: the next page's URL). */
  pageToken?: string;
  pageSize: number;
}

export interface SourceRateLimit {
  limit: number;
  remaining: number;
  /** Epoch ms. */
  resetAt: number;
}

export interface FetchedPage {
  signals: SignalInput[];
  /** More in this window; absent when the window has been read to its end. */
  nextPageToken?: string;
  /** The cursor to store once the window is complete (X: newest id). The first page's proposal wins. */
  cursorCandidate?: string;
  /** The source's budget after this call; remaining 0 means stop until resetAt. */
  rateLimit?: SourceRateLimit | null;
  /** Partial problems reported beside the data (e.g. a suspended author). */
  warnings?: string[];
}

/** Thrown by a source when it is out of budget (HTTP 429); resetAt tells when to come back. */
export class SourceRateLimitedError extends Error {
  override readonly name = 'SourceRateLimitedError';
  constructor(message: string, readonly resetAt: number) {
    super(message);
  }
}

/** Thrown by a source when the request itself is wrong (bad query, auth): retrying will not help. */
export class SourceRejectedError extends Error {
  override readonly name = 'SourceRejectedError';
  constructor(message: string, readonly status: number, readonly badPageToken = false) {
    super(message);
  }
}

/**
 * A request the outbound policy refused (an address it may not reach, an
 * answer too large or too slow, a page with too many items): rejected like
 * any refusal, and recorded with its reason.
 */
export class SourceRefusedError extends SourceRejectedError {
  constructor(message: string, readonly reason: string) {
    super(message, 0);
  }
}

export interface SignalSource {
  readonly kind: SourceKind;
  /** True when a page of only already-known items means the rest is known too (feed archives). */
  readonly stopOnKnownPage: boolean;
  fetchPage(request: FetchRequest): Promise<FetchedPage>;
}
