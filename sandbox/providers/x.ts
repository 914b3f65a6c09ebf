import type { Request, Response, Router } from 'express';
import { seededRandom } from '../../lib/domain/prng.js';
import fixture from '../fixtures/x.json' with { type: 'json' };
import type { ErrorKind, ProviderContext, ProviderModule, WireError } from '../types.js';

/**
 * X API v2 stand-in: recent search (with a subset of the query language),
 * user and tweet lookup, per-endpoint rate-limit windows with the real
 * x-rate-limit-* headers, and X's problem-JSON error bodies. Tweets are kept
 * sorted by id so search over tens of thousands stays a single backwards scan.
 * Control routes under /_sandbox/x seed tweets in bulk for benchmarks.
 */

// ---- state ----------------------------------------------------------------------

export interface XPublicMetrics {
  retweet_count: number;
  reply_count: number;
  like_count: number;
  quote_count: number;
  bookmark_count: number;
  impression_count: number;
}

export interface XStoredUser {
  id: string;
  username: string;
  name: string;
  verified: boolean;
  description: string;
  location: string;
  created_at: string;
  public_metrics: { followers_count: number; following_count: number; tweet_count: number; listed_count: number; like_count: number };
}

type ReferenceType = 'retweeted' | 'replied_to' | 'quoted';

export interface XStoredTweet {
  id: string;
  text: string;
  author_id: string;
  created_at: string;
  lang: string;
  conversation_id: string;
  public_metrics: XPublicMetrics;
  referenced_tweets?: { type: ReferenceType; id: string }[];
  in_reply_to_user_id?: string;
}

type Endpoint = 'search' | 'users' | 'tweets';

export interface XState {
  users: XStoredUser[];
  /** Ascending by id (numeric order); new tweets always get a larger id. */
  tweets: XStoredTweet[];
  lastTweetId: string;
  rateLimits: Record<Endpoint, { limit: number; windowSeconds: number }>;
  /** Current fixed window per endpoint: resetAt in epoch seconds. */
  windows: Partial<Record<Endpoint, { resetAt: number; used: number }>>;
}

type Ctx = ProviderContext<XState>;

/** Recent search on the Pro tier with an app-only token: 450 requests / 15 minutes. */
const DEFAULT_LIMITS: XState['rateLimits'] = {
  search: { limit: 450, windowSeconds: 900 },
  users: { limit: 300, windowSeconds: 900 },
  tweets: { limit: 450, windowSeconds: 900 },
};
const RECENT_WINDOW_MS = 7 * 24 * 3600_000;
const TWITTER_EPOCH = 1288834974657n;

// ---- ids ----------------------------------------------------------------------------

/** Numeric comparison of non-negative integer strings without BigInt (hot path of search). */
function cmpId(a: string, b: string): number {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A snowflake-like id for a creation time, always above the last one handed out. */
function nextTweetId(state: XState, createdMs: number): string {
  const snowflake = (BigInt(Math.floor(createdMs)) - TWITTER_EPOCH) << 22n;
  const next = BigInt(state.lastTweetId) + 1n;
  const id = (snowflake > next ? snowflake : next).toString();
  state.lastTweetId = id;
  return id;
}

/** Index of the first tweet whose id is >= id. */
function lowerBound(tweets: XStoredTweet[], id: string): number {
  let lo = 0;
  let hi = tweets.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cmpId(tweets[mid]!.id, id) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function insertTweet(state: XState, tweet: XStoredTweet) {
  const last = state.tweets[state.tweets.length - 1];
  if (!last || cmpId(last.id, tweet.id) < 0) state.tweets.push(tweet);
  else state.tweets.splice(lowerBound(state.tweets, tweet.id), 0, tweet);
  if (cmpId(tweet.id, state.lastTweetId) > 0) state.lastTweetId = tweet.id;
}

// ---- seeding ----------------------------------------------------------------------------

interface FixtureTweet {
  key: string;
  age_minutes: number;
  username: string;
  lang: string;
  text: string;
  reply_to?: string;
  retweet_of?: string;
  public_metrics: XPublicMetrics;
}

function initialState(): XState {
  const now = Date.now();
  const users: XStoredUser[] = fixture.users.map((u, i) => ({
    ...u,
    created_at: new Date(Date.UTC(2015 + (i % 8), i % 12, 1 + i)).toISOString(),
  }));
  const state: XState = {
    users,
    tweets: [],
    lastTweetId: '0',
    rateLimits: structuredClone(DEFAULT_LIMITS),
    windows: {},
  };
  const byKey = new Map<string, XStoredTweet>();
  const ordered = [...(fixture.tweets as FixtureTweet[])].sort((a, b) => b.age_minutes - a.age_minutes);
  for (const f of ordered) {
    const author = users.find((u) => u.username === f.username);
    if (!author) throw new Error(`x fixture: unknown author ${f.username}`);
    const createdMs = now - f.age_minutes * 60_000;
    const id = nextTweetId(state, createdMs);
    const parent = f.reply_to ? byKey.get(f.reply_to) : undefined;
    const original = f.retweet_of ? byKey.get(f.retweet_of) : undefined;
    const tweet: XStoredTweet = {
      id,
      text: f.text,
      author_id: author.id,
      created_at: new Date(createdMs).toISOString(),
      lang: f.lang,
      conversation_id: parent?.conversation_id ?? id,
      public_metrics: { ...f.public_metrics },
      ...(parent ? { referenced_tweets: [{ type: 'replied_to' as const, id: parent.id }], in_reply_to_user_id: parent.author_id } : {}),
      ...(original ? { referenced_tweets: [{ type: 'retweeted' as const, id: original.id }] } : {}),
    };
    byKey.set(f.key, tweet);
    insertTweet(state, tweet);
  }
  return state;
}

// ---- query language -------------------------------------------------------------------------

type Node =
  | { kind: 'and'; items: Node[] }
  | { kind: 'or'; items: Node[] }
  | { kind: 'not'; item: Node }
  | { kind: 'text'; tokens: string[] }
  | { kind: 'op'; name: string; value: string };

class QueryError extends Error {
  constructor(message: string, readonly position: number) {
    super(message);
  }
}

type Lexeme = { type: '(' | ')' | 'OR' | '-' | 'phrase' | 'word' | 'eof'; value: string; pos: number };

function lex(q: string): Lexeme[] {
  const out: Lexeme[] = [];
  let i = 0;
  while (i < q.length) {
    const c = q[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '(' || c === ')') {
      out.push({ type: c, value: c, pos: i });
      i++;
    } else if (c === '-' && i + 1 < q.length && !/\s/.test(q[i + 1]!)) {
      out.push({ type: '-', value: c, pos: i });
      i++;
    } else if (c === '"') {
      const end = q.indexOf('"', i + 1);
      if (end < 0) throw new QueryError('missing closing quote', i + 1);
      out.push({ type: 'phrase', value: q.slice(i + 1, end), pos: i });
      i = end + 1;
    } else {
      const start = i;
      while (i < q.length && !/[\s()"]/.test(q[i]!)) i++;
      const value = q.slice(start, i);
      out.push({ type: value === 'OR' ? 'OR' : 'word', value, pos: start });
    }
  }
  out.push({ type: 'eof', value: '', pos: q.length });
  return out;
}

const OPERATORS: Record<string, { standalone: boolean; values?: string[] }> = {
  from: { standalone: true },
  to: { standalone: true },
  conversation_id: { standalone: true },
  url: { standalone: true },
  lang: { standalone: false },
  is: { standalone: false, values: ['retweet', 'reply', 'quote', 'verified'] },
  has: { standalone: false, values: ['links', 'mentions', 'hashtags', 'media', 'images', 'videos'] },
};

/** Words as X tokenises them: case-folded runs of letters/digits, keeping a leading #, @ or $. */
function tokenize(text: string): string[] {
  return text.toLowerCase().match(/[#@$]?[\p{L}\p{N}_]+/gu) ?? [];
}

/** AND binds tighter than OR (as on X); juxtaposition is AND; `-` negates the next clause. */
function parseQuery(q: string): Node {
  const lexemes = lex(q);
  let i = 0;
  const peek = () => lexemes[i]!;
  const next = () => lexemes[i++]!;

  const parseOr = (): Node => {
    const items = [parseAnd()];
    while (peek().type === 'OR') {
      next();
      items.push(parseAnd());
    }
    return items.length === 1 ? items[0]! : { kind: 'or', items };
  };
  const parseAnd = (): Node => {
    const items: Node[] = [];
    while (!['eof', ')', 'OR'].includes(peek().type)) items.push(parseUnary());
    if (items.length === 0) throw new QueryError(`no viable alternative at input '${peek().value || '<EOF>'}'`, peek().pos + 1);
    return items.length === 1 ? items[0]! : { kind: 'and', items };
  };
  const parseUnary = (): Node => {
    if (peek().type === '-') {
      next();
      return { kind: 'not', item: parseAtom() };
    }
    return parseAtom();
  };
  const parseAtom = (): Node => {
    const lexeme = next();
    switch (lexeme.type) {
      case '(': {
        const inner = parseOr();
        if (next().type !== ')') throw new QueryError("missing ')'", lexeme.pos + 1);
        return inner;
      }
      case 'phrase':
        return { kind: 'text', tokens: tokenize(lexeme.value) };
      case 'word':
        return parseWord(lexeme);
      default:
        throw new QueryError(`no viable alternative at input '${lexeme.value || '<EOF>'}'`, lexeme.pos + 1);
    }
  };

  const root = parseOr();
  if (peek().type !== 'eof') throw new QueryError(`extraneous input '${peek().value}'`, peek().pos + 1);
  if (!standalone(root)) {
    throw new QueryError('Rules must contain a non-negation term and at least one standalone operator (keyword, phrase, from:, ...)', 1);
  }
  return root;
}

function parseWord(lexeme: Lexeme): Node {
  const op = lexeme.value.match(/^([a-z_]+):(.+)$/i);
  if (!op) return { kind: 'text', tokens: tokenize(lexeme.value) };
  const name = op[1]!.toLowerCase();
  const value = op[2]!;
  const spec = OPERATORS[name];
  if (!spec) throw new QueryError(`Reference to invalid operator '${name}'. Operator is not available in current product or product packaging`, lexeme.pos + 1);
  if (spec.values && !spec.values.includes(value.toLowerCase())) {
    throw new QueryError(`Reference to invalid field '${value}'`, lexeme.pos + name.length + 2);
  }
  return { kind: 'op', name, value };
}

/** X rejects queries made only of negations and conjunction-required operators (is:, has:, lang:). */
function standalone(node: Node): boolean {
  switch (node.kind) {
    case 'text':
      return node.tokens.length > 0;
    case 'op':
      return OPERATORS[node.name]!.standalone;
    case 'not':
      return false;
    case 'and':
      return node.items.some(standalone);
    case 'or':
      return node.items.every(standalone);
  }
}

type Predicate = (t: XStoredTweet) => boolean;

const tokenCache = new WeakMap<XStoredTweet, string[]>();
function tweetTokens(t: XStoredTweet): string[] {
  let tokens = tokenCache.get(t);
  if (!tokens) tokenCache.set(t, (tokens = tokenize(t.text)));
  return tokens;
}

/** A plain keyword also matches its #hashtag / @mention / $cashtag form. */
function tokenEquals(word: string, query: string): boolean {
  return word === query || (word.length === query.length + 1 && /^[#@$]/.test(word) && !/^[#@$]/.test(query) && word.endsWith(query));
}

function containsSequence(words: string[], query: string[]): boolean {
  outer: for (let i = 0; i + query.length <= words.length; i++) {
    for (let j = 0; j < query.length; j++) if (!tokenEquals(words[i + j]!, query[j]!)) continue outer;
    return true;
  }
  return false;
}

function compile(node: Node, state: XState): Predicate {
  switch (node.kind) {
    case 'and': {
      const parts = node.items.map((n) => compile(n, state));
      return (t) => parts.every((p) => p(t));
    }
    case 'or': {
      const parts = node.items.map((n) => compile(n, state));
      return (t) => parts.some((p) => p(t));
    }
    case 'not': {
      const inner = compile(node.item, state);
      return (t) => !inner(t);
    }
    case 'text': {
      const tokens = node.tokens;
      if (tokens.length === 0) return () => true;
      return (t) => containsSequence(tweetTokens(t), tokens);
    }
    case 'op':
      return compileOperator(node.name, node.value, state);
  }
}

function compileOperator(name: string, rawValue: string, state: XState): Predicate {
  const value = rawValue.toLowerCase();
  const userId = () => state.users.find((u) => u.username.toLowerCase() === value.replace(/^@/, ''))?.id;
  const hasRef = (type: ReferenceType) => (t: XStoredTweet) => Boolean(t.referenced_tweets?.some((r) => r.type === type));
  switch (name) {
    case 'from': {
      const id = userId();
      return (t) => t.author_id === id;
    }
    case 'to': {
      const id = userId();
      return (t) => id !== undefined && t.in_reply_to_user_id === id;
    }
    case 'lang':
      return (t) => t.lang === value;
    case 'conversation_id':
      return (t) => t.conversation_id === rawValue;
    case 'url':
      return (t) => t.text.toLowerCase().includes(value.replace(/^"|"$/g, ''));
    case 'is':
      if (value === 'retweet') return hasRef('retweeted');
      if (value === 'reply') return hasRef('replied_to');
      if (value === 'quote') return hasRef('quoted');
      return (t) => Boolean(state.users.find((u) => u.id === t.author_id)?.verified);
    case 'has':
      if (value === 'links') return (t) => /https?:\/\/\S/i.test(t.text);
      if (value === 'mentions') return (t) => /(^|[^\w])@\w/.test(t.text);
      if (value === 'hashtags') return (t) => /(^|[^\w])#\w/.test(t.text);
      return () => false; // no media in the sandbox
    default:
      return () => false;
  }
}

// ---- fields and expansions ---------------------------------------------------------------------

const TWEET_FIELDS = [
  'article', 'attachments', 'author_id', 'card_uri', 'community_id', 'context_annotations', 'conversation_id', 'created_at',
  'display_text_range', 'edit_controls', 'edit_history_tweet_ids', 'entities', 'geo', 'id', 'in_reply_to_user_id', 'lang',
  'media_metadata', 'non_public_metrics', 'note_tweet', 'organic_metrics', 'possibly_sensitive', 'promoted_metrics',
  'public_metrics', 'referenced_tweets', 'reply_settings', 'scopes', 'source', 'suggested_source_links', 'text', 'withheld',
  // spellings the xdk SDK's generated types use
  'article_title', 'matched_media_notes', 'note_post', 'note_request_suggestions', 'paid_partnership', 'suggested_source_links_with_counts',
];
const USER_FIELDS = [
  'affiliation', 'connection_status', 'created_at', 'description', 'entities', 'id', 'is_identity_verified', 'location',
  'most_recent_tweet_id', 'name', 'parody', 'pinned_tweet_id', 'profile_banner_url', 'profile_image_url', 'protected',
  'public_metrics', 'receives_your_dm', 'subscription', 'subscription_type', 'url', 'username', 'verified',
  'verified_followers_count', 'verified_type', 'withheld', 'confirmed_email', 'subscribes_to_you',
];
const EXPANSIONS = [
  'attachments.media_keys', 'attachments.media_source_tweet', 'attachments.poll_ids', 'author_id', 'edit_history_tweet_ids',
  'entities.mentions.username', 'geo.place_id', 'in_reply_to_user_id', 'entities.note.mentions.username',
  'referenced_tweets.id', 'referenced_tweets.id.attachments.media_keys', 'referenced_tweets.id.author_id',
];
const MEDIA_FIELDS = ['alt_text', 'duration_ms', 'height', 'media_key', 'non_public_metrics', 'organic_metrics', 'preview_image_url', 'promoted_metrics', 'public_metrics', 'type', 'url', 'variants', 'width'];
const POLL_FIELDS = ['duration_minutes', 'end_datetime', 'id', 'options', 'voting_status'];
const PLACE_FIELDS = ['contained_within', 'country', 'country_code', 'full_name', 'geo', 'id', 'name', 'place_type'];

function shapeTweet(t: XStoredTweet, fields: Set<string>): Record<string, unknown> {
  const out: Record<string, unknown> = { id: t.id, text: t.text, edit_history_tweet_ids: [t.id] };
  if (fields.has('author_id')) out.author_id = t.author_id;
  if (fields.has('created_at')) out.created_at = t.created_at;
  if (fields.has('conversation_id')) out.conversation_id = t.conversation_id;
  if (fields.has('lang')) out.lang = t.lang;
  if (fields.has('public_metrics')) out.public_metrics = t.public_metrics;
  if (fields.has('referenced_tweets') && t.referenced_tweets) out.referenced_tweets = t.referenced_tweets;
  if (fields.has('in_reply_to_user_id') && t.in_reply_to_user_id) out.in_reply_to_user_id = t.in_reply_to_user_id;
  if (fields.has('possibly_sensitive')) out.possibly_sensitive = false;
  if (fields.has('reply_settings')) out.reply_settings = 'everyone';
  return out;
}

function shapeUser(u: XStoredUser, fields: Set<string>): Record<string, unknown> {
  const out: Record<string, unknown> = { id: u.id, name: u.name, username: u.username };
  if (fields.has('public_metrics')) out.public_metrics = u.public_metrics;
  if (fields.has('verified')) out.verified = u.verified;
  if (fields.has('verified_type')) out.verified_type = u.verified ? 'blue' : 'none';
  if (fields.has('description')) out.description = u.description;
  if (fields.has('location') && u.location) out.location = u.location;
  if (fields.has('created_at')) out.created_at = u.created_at;
  if (fields.has('protected')) out.protected = false;
  if (fields.has('profile_image_url')) out.profile_image_url = `https://pbs.twimg.example/profile_images/${u.id}/normal.jpg`;
  return out;
}

interface Shaping {
  tweetFields: Set<string>;
  userFields: Set<string>;
  expansions: Set<string>;
}

/** data + includes for a set of tweets, as the requested fields and expansions ask. */
function tweetPayload(state: XState, tweets: XStoredTweet[], shaping: Shaping) {
  const data = tweets.map((t) => shapeTweet(t, shaping.tweetFields));
  const includes: { users?: Record<string, unknown>[]; tweets?: Record<string, unknown>[] } = {};
  const userIds = new Set<string>();
  const referenced: XStoredTweet[] = [];
  if (shaping.expansions.has('referenced_tweets.id')) {
    for (const t of tweets) {
      for (const ref of t.referenced_tweets ?? []) {
        const i = lowerBound(state.tweets, ref.id);
        const found = state.tweets[i];
        if (found?.id === ref.id && !referenced.includes(found)) referenced.push(found);
      }
    }
    if (referenced.length) includes.tweets = referenced.map((t) => shapeTweet(t, shaping.tweetFields));
  }
  if (shaping.expansions.has('author_id')) for (const t of tweets) userIds.add(t.author_id);
  if (shaping.expansions.has('referenced_tweets.id.author_id')) for (const t of referenced) userIds.add(t.author_id);
  if (shaping.expansions.has('in_reply_to_user_id')) for (const t of tweets) if (t.in_reply_to_user_id) userIds.add(t.in_reply_to_user_id);
  if (userIds.size) {
    const byId = new Map(state.users.map((u) => [u.id, u]));
    includes.users = [...userIds].flatMap((id) => {
      const u = byId.get(id);
      return u ? [shapeUser(u, shaping.userFields)] : [];
    });
  }
  return { data, includes: Object.keys(includes).length ? includes : undefined };
}

// ---- parameter validation ---------------------------------------------------------------------

interface ParamError {
  parameters: Record<string, string[]>;
  message: string;
}

class Params {
  readonly errors: ParamError[] = [];
  constructor(private readonly query: Request['query'], allowed: string[]) {
    for (const key of Object.keys(query)) {
      if (!allowed.includes(key)) this.fail(key, String(query[key]), `The query parameter [${key}] is not one of [${allowed.join(',')}]`);
    }
  }

  fail(name: string, value: string, message: string) {
    this.errors.push({ parameters: { [name]: value === '' ? [] : [value] }, message });
  }

  string(name: string): string | undefined {
    const value = this.query[name];
    if (value === undefined) return undefined;
    if (typeof value !== 'string') {
      this.fail(name, String(value), `Duplicate parameter [${name}]`);
      return undefined;
    }
    return value;
  }

  id(name: string): string | undefined {
    const value = this.string(name);
    if (value !== undefined && !/^[0-9]{1,19}$/.test(value)) {
      this.fail(name, value, `The \`${name}\` query parameter value [${value}] does not match ^[0-9]{1,19}$`);
      return undefined;
    }
    return value;
  }

  list(name: string, allowed: string[]): Set<string> {
    const value = this.string(name);
    const items = value === undefined ? [] : value.split(',').map((s) => s.trim()).filter(Boolean);
    for (const item of items) {
      if (!allowed.includes(item)) this.fail(name, item, `The \`${name}\` query parameter value [${item}] is not one of [${allowed.join(',')}]`);
    }
    return new Set(items);
  }

  time(name: string): string | undefined {
    const value = this.string(name);
    if (value === undefined) return undefined;
    const ms = Date.parse(value);
    if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(value) || Number.isNaN(ms)) {
      this.fail(name, value, `The \`${name}\` query parameter value [${value}] is not a valid RFC 3339 date-time`);
      return undefined;
    }
    return new Date(ms).toISOString();
  }

  shaping(): Shaping {
    // xdk 0.6.x names the tweet fields parameter `post.fields`; accept both spellings.
    const tweetFields = this.list('tweet.fields', TWEET_FIELDS);
    for (const f of this.list('post.fields', TWEET_FIELDS)) tweetFields.add(f);
    this.list('media.fields', MEDIA_FIELDS);
    this.list('poll.fields', POLL_FIELDS);
    this.list('place.fields', PLACE_FIELDS);
    return { tweetFields, userFields: this.list('user.fields', USER_FIELDS), expansions: this.list('expansions', EXPANSIONS) };
  }
}

const SHAPING_PARAMS = ['expansions', 'tweet.fields', 'post.fields', 'user.fields', 'media.fields', 'poll.fields', 'place.fields'];
const SEARCH_PARAMS = ['query', 'start_time', 'end_time', 'since_id', 'until_id', 'max_results', 'next_token', 'pagination_token', 'sort_order', ...SHAPING_PARAMS];

function invalidRequest(errors: ParamError[]) {
  return {
    errors,
    title: 'Invalid Request',
    detail: 'One or more parameters to your request was invalid.',
    type: 'https://api.twitter.com/2/problems/invalid-request',
  };
}

// ---- auth and rate limits ------------------------------------------------------------------------------

const UNAUTHORIZED = { title: 'Unauthorized', type: 'about:blank', status: 401, detail: 'Unauthorized' };
const TOO_MANY = { title: 'Too Many Requests', detail: 'Too Many Requests', type: 'about:blank', status: 429 };

function authorized(req: Request, res: Response): boolean {
  const token = req.get('authorization')?.match(/^Bearer\s+(.*)$/i)?.[1]?.trim();
  if (token) return true;
  res.status(401).json(UNAUTHORIZED);
  return false;
}

/** Counts the request against the endpoint's window, sets x-rate-limit-* headers; false (and a 429 sent) when spent. */
function consume(ctx: Ctx, endpoint: Endpoint, res: Response): boolean {
  const { limit, windowSeconds } = ctx.state.rateLimits[endpoint];
  const now = Math.floor(ctx.now() / 1000);
  let window = ctx.state.windows[endpoint];
  if (!window || now >= window.resetAt) window = ctx.state.windows[endpoint] = { resetAt: now + windowSeconds, used: 0 };
  // Windows are not persisted eagerly (no ctx.changed()): a restart forgiving a window is harmless.
  const allowed = window.used < limit;
  if (allowed) window.used++;
  res.set({
    'x-rate-limit-limit': String(limit),
    'x-rate-limit-remaining': String(Math.max(0, limit - window.used)),
    'x-rate-limit-reset': String(window.resetAt),
  });
  if (!allowed) {
    res.set('retry-after', String(Math.max(0, window.resetAt - now)));
    res.status(429).json(TOO_MANY);
  }
  return allowed;
}

// ---- recent search ---------------------------------------------------------------------------------------

const encodeToken = (id: string) => Buffer.from(`v1:${id}`).toString('base64url');
function decodeToken(token: string): string | undefined {
  const m = Buffer.from(token, 'base64url').toString('utf8').match(/^v1:(\d{1,19})$/);
  return m?.[1];
}

function searchRecent(ctx: Ctx) {
  return (req: Request, res: Response) => {
    if (!authorized(req, res) || !consume(ctx, 'search', res)) return;
    const p = new Params(req.query, SEARCH_PARAMS);
    const now = ctx.now();
    const query = p.string('query');
    let matches: Predicate | undefined;
    if (query === undefined || query.trim() === '') {
      p.fail('query', '', 'The `query` query parameter can not be empty');
    } else if (query.length > 512) {
      p.fail('query', query, `The \`query\` query parameter value [${query}] is not valid: maximum length is 512 characters`);
    } else {
      try {
        matches = compile(parseQuery(query), ctx.state);
      } catch (err) {
        if (!(err instanceof QueryError)) throw err;
        p.fail('query', query, `There were errors processing your request: ${err.message} (at position ${err.position})`);
      }
    }
    const maxRaw = p.string('max_results');
    const max = maxRaw === undefined ? 10 : Number(maxRaw);
    if (!Number.isInteger(max) || max < 10 || max > 100) {
      p.fail('max_results', String(maxRaw), `The \`max_results\` query parameter value [${maxRaw}] is not between 10 and 100`);
    }
    const sinceId = p.id('since_id');
    const untilId = p.id('until_id');
    const startTime = p.time('start_time');
    const endTime = p.time('end_time');
    const cutoff = new Date(now - RECENT_WINDOW_MS).toISOString();
    if (startTime && startTime < cutoff) {
      p.fail('start_time', startTime, `Invalid 'start_time':'${startTime}'. 'start_time' must be on or after ${cutoff}`);
    }
    if (endTime && Date.parse(endTime) > now - 10_000) {
      p.fail('end_time', endTime, `Invalid 'end_time':'${endTime}'. 'end_time' must be a minimum of 10 seconds prior to the request time.`);
    }
    if (startTime && endTime && startTime >= endTime) {
      p.fail('start_time', startTime, `Invalid 'start_time':'${startTime}'. 'start_time' must be before 'end_time':'${endTime}'`);
    }
    const sortOrder = p.string('sort_order');
    if (sortOrder !== undefined && sortOrder !== 'recency' && sortOrder !== 'relevancy') {
      p.fail('sort_order', sortOrder, `The \`sort_order\` query parameter value [${sortOrder}] is not one of [recency,relevancy]`);
    }
    const token = p.string('next_token') ?? p.string('pagination_token');
    const afterToken = token === undefined ? undefined : decodeToken(token);
    if (token !== undefined && afterToken === undefined) {
      p.fail('next_token', token, `The \`next_token\` query parameter value [${token}] is not valid`);
    }
    const shaping = p.shaping();
    if (p.errors.length || !matches) return void res.status(400).json(invalidRequest(p.errors));

    const page = scan(ctx.state.tweets, {
      matches,
      max,
      below: [untilId, afterToken].filter((x): x is string => x !== undefined).sort(cmpId)[0],
      above: sinceId,
      from: startTime && startTime > cutoff ? startTime : cutoff,
      to: endTime,
    });
    if (page.tweets.length === 0) return void res.json({ meta: { result_count: 0 } });
    const { data, includes } = tweetPayload(ctx.state, page.tweets, shaping);
    res.json({
      data,
      ...(includes ? { includes } : {}),
      meta: {
        newest_id: page.tweets[0]!.id,
        oldest_id: page.tweets[page.tweets.length - 1]!.id,
        result_count: page.tweets.length,
        ...(page.more ? { next_token: encodeToken(page.tweets[page.tweets.length - 1]!.id) } : {}),
      },
    });
  };
}

/** Walks tweets newest to oldest from just below `below`, stopping at `above`; one extra match tells whether more exist. */
function scan(
  tweets: XStoredTweet[],
  o: { matches: Predicate; max: number; below?: string; above?: string; from: string; to?: string },
): { tweets: XStoredTweet[]; more: boolean } {
  const found: XStoredTweet[] = [];
  for (let i = (o.below ? lowerBound(tweets, o.below) : tweets.length) - 1; i >= 0; i--) {
    const t = tweets[i]!;
    if (o.above && cmpId(t.id, o.above) <= 0) break;
    if (t.created_at < o.from || (o.to && t.created_at >= o.to)) continue;
    if (!o.matches(t)) continue;
    if (found.length === o.max) return { tweets: found, more: true };
    found.push(t);
  }
  return { tweets: found, more: false };
}

// ---- lookups -----------------------------------------------------------------------------------------

function notFound(resource: 'user' | 'tweet', parameter: string, value: string, detail: string) {
  return {
    value,
    detail,
    title: 'Not Found Error',
    resource_type: resource,
    parameter,
    resource_id: value,
    type: 'https://api.twitter.com/2/problems/resource-not-found',
  };
}

function findTweet(state: XState, id: string): XStoredTweet | undefined {
  const t = state.tweets[lowerBound(state.tweets, id)];
  return t?.id === id ? t : undefined;
}

function lookupUsers(ctx: Ctx, req: Request, res: Response, keys: string[], by: 'username' | 'id', parameter: string, single: boolean) {
  const p = new Params(req.query, [...(single ? [] : [parameter]), 'expansions', 'user.fields', 'tweet.fields', 'post.fields']);
  for (const key of keys) {
    if (by === 'username' && !/^[A-Za-z0-9_]{1,15}$/.test(key)) p.fail(parameter, key, `The \`${parameter}\` query parameter value [${key}] does not match ^[A-Za-z0-9_]{1,15}$`);
    if (by === 'id' && !/^[0-9]{1,19}$/.test(key)) p.fail(parameter, key, `The \`${parameter}\` query parameter value [${key}] does not match ^[0-9]{1,19}$`);
  }
  const userFields = p.list('user.fields', USER_FIELDS);
  p.list('expansions', ['pinned_tweet_id', 'most_recent_tweet_id', 'affiliation.user_id', 'pinned_post_id', 'most_recent_post_id', 'affiliation']);
  p.list('tweet.fields', TWEET_FIELDS);
  if (p.errors.length) return void res.status(400).json(invalidRequest(p.errors));
  const found: Record<string, unknown>[] = [];
  const errors: unknown[] = [];
  for (const key of keys) {
    const u = ctx.state.users.find((x) => (by === 'id' ? x.id === key : x.username.toLowerCase() === key.toLowerCase()));
    if (u) found.push(shapeUser(u, userFields));
    else errors.push(notFound('user', parameter, key, `Could not find user with ${parameter}: [${key}].`));
  }
  const data = single ? found[0] : found;
  res.json({ ...(found.length ? { data } : {}), ...(errors.length ? { errors } : {}) });
}

function lookupTweets(ctx: Ctx, req: Request, res: Response, ids: string[], single: boolean) {
  const p = new Params(req.query, [...(single ? [] : ['ids']), ...SHAPING_PARAMS]);
  if (!single && (ids.length < 1 || ids.length > 100)) p.fail('ids', ids.join(','), `The number of values in the \`ids\` query parameter list [${ids.length}] is not between 1 and 100`);
  for (const id of ids) if (!/^[0-9]{1,19}$/.test(id)) p.fail(single ? 'id' : 'ids', id, `The \`ids\` query parameter value [${id}] does not match ^[0-9]{1,19}$`);
  const shaping = p.shaping();
  if (p.errors.length) return void res.status(400).json(invalidRequest(p.errors));
  const tweets: XStoredTweet[] = [];
  const errors: unknown[] = [];
  for (const id of ids) {
    const t = findTweet(ctx.state, id);
    if (t) tweets.push(t);
    else errors.push(notFound('tweet', single ? 'id' : 'ids', id, `Could not find tweet with ${single ? 'id' : 'ids'}: [${id}].`));
  }
  const { data, includes } = tweetPayload(ctx.state, tweets, shaping);
  res.json({
    ...(tweets.length ? { data: single ? data[0] : data } : {}),
    ...(includes ? { includes } : {}),
    ...(errors.length ? { errors } : {}),
  });
}

// ---- errors ----------------------------------------------------------------------------------------------

const STATUS_TITLES: Record<number, string> = {
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

function errorFor(kind: ErrorKind, status: number, message: string, extra?: Record<string, unknown>): WireError {
  switch (kind) {
    case 'rate_limit': {
      const retryAfter = Number(extra?.retryAfterSeconds ?? 1);
      return {
        status: 429,
        headers: {
          'x-rate-limit-limit': String(DEFAULT_LIMITS.search.limit),
          'x-rate-limit-remaining': '0',
          'x-rate-limit-reset': String(Math.floor(Date.now() / 1000) + retryAfter),
          'retry-after': String(retryAfter),
        },
        body: TOO_MANY,
      };
    }
    case 'unauthorized':
      return { status: 401, body: UNAUTHORIZED };
    case 'bad_request':
      return { status: 400, body: invalidRequest([{ parameters: {}, message }]) };
    case 'not_found':
      return { status, body: { title: 'Not Found Error', detail: message, type: 'https://api.twitter.com/2/problems/resource-not-found' } };
    case 'error': {
      const title = STATUS_TITLES[status] ?? 'Internal Server Error';
      return { status, body: { title, detail: title, type: 'about:blank', status } };
    }
  }
}

// ---- control plane: seeding for tests and benchmarks ------------------------------------------------------


const FIRST_NAMES = ['Alex', 'Sam', 'Jordan', 'Taylor', 'Morgan', 'Casey', 'Riley', 'Jamie', 'Avery', 'Quinn', 'Harper', 'Rowan'];
const LAST_NAMES = ['Reyes', 'Kim', 'Novak', 'Haddad', 'Larsen', 'Osei', 'Tanaka', 'Moreau', 'Silva', 'Brennan', 'Iyer', 'Kowalski'];

/** Synthetic authors gen_author_1..n, created once and reused (their numbers do not depend on the seed). */
function syntheticAuthors(state: XState, count: number): XStoredUser[] {
  const authors: XStoredUser[] = [];
  const byName = new Map(state.users.map((u) => [u.username, u]));
  for (let i = 1; i <= count; i++) {
    const username = `gen_author_${i}`;
    let user = byName.get(username);
    if (!user) {
      const r = seededRandom(i);
      user = {
        id: (1_700_000_000_000_000_000n + BigInt(i)).toString(),
        username,
        name: `${FIRST_NAMES[i % FIRST_NAMES.length]} ${LAST_NAMES[Math.floor(i / FIRST_NAMES.length) % LAST_NAMES.length]}`,
        verified: r() < 0.1,
        description: 'Synthetic author for sandbox load tests.',
        location: '',
        created_at: new Date(Date.UTC(2018, i % 12, 1 + (i % 28))).toISOString(),
        public_metrics: {
          followers_count: Math.floor(Math.exp(r() * 10)),
          following_count: Math.floor(r() * 2000),
          tweet_count: Math.floor(r() * 20000),
          listed_count: Math.floor(r() * 100),
          like_count: Math.floor(r() * 30000),
        },
      };
      state.users.push(user);
    }
    authors.push(user);
  }
  return authors;
}

interface GenerateOptions {
  count: number;
  seed?: number;
  terms?: string[];
  authors?: number;
  /** Creation times spread evenly over this many minutes up to now (default 24 h). */
  spreadMinutes?: number;
  lang?: string;
}

/** Appends `count` synthetic tweets, deterministic for a seed (texts, authors, metrics). */
function generate(ctx: Ctx, o: GenerateOptions): XStoredTweet[] {
  const r = seededRandom(o.seed ?? 1);
  const pick = <T>(items: T[]): T => items[Math.floor(r() * items.length)]!;
  const synthetic = fixture.synthetic;
  const terms = o.terms?.length ? o.terms : synthetic.terms;
  const authors = syntheticAuthors(ctx.state, o.authors ?? 40);
  const now = ctx.now();
  const spreadMs = (o.spreadMinutes ?? 24 * 60) * 60_000;
  const created: XStoredTweet[] = [];
  for (let k = 0; k < o.count; k++) {
    const createdMs = now - spreadMs + Math.round(((k + 1) * spreadMs) / o.count);
    const text = pick(synthetic.templates)
      .replace('{term}', pick(terms))
      .replace('{feature}', pick(synthetic.features))
      .replace('{period}', pick(synthetic.periods))
      .replace('{hour}', String(Math.floor(r() * 24)))
      .replace(/\{n\}/g, String(2 + Math.floor(r() * 60)));
    const id = nextTweetId(ctx.state, createdMs);
    const likes = Math.floor(Math.exp(r() * 6)) - 1;
    const tweet: XStoredTweet = {
      id,
      text,
      author_id: pick(authors).id,
      created_at: new Date(createdMs).toISOString(),
      lang: o.lang ?? 'en',
      conversation_id: id,
      public_metrics: {
        retweet_count: Math.floor(likes * r() * 0.3),
        reply_count: Math.floor(likes * r() * 0.2),
        like_count: likes,
        quote_count: Math.floor(likes * r() * 0.05),
        bookmark_count: Math.floor(likes * r() * 0.1),
        impression_count: likes * 40 + Math.floor(r() * 500),
      },
    };
    ctx.state.tweets.push(tweet); // ids only grow, so appending keeps the order
    created.push(tweet);
  }
  ctx.changed();
  return created;
}

interface NewTweet {
  id?: string;
  text?: string;
  username?: string;
  author_id?: string;
  created_at?: string;
  age_minutes?: number;
  lang?: string;
  public_metrics?: Partial<XPublicMetrics>;
  reply_to?: string;
  retweet_of?: string;
  quote_of?: string;
}

function addTweet(ctx: Ctx, input: NewTweet): XStoredTweet | string {
  if (!input.text) return 'text is required';
  const user = input.author_id
    ? ctx.state.users.find((u) => u.id === input.author_id)
    : ctx.state.users.find((u) => u.username.toLowerCase() === (input.username ?? '').toLowerCase()) ??
      (input.username ? syntheticUser(ctx, input.username) : undefined);
  if (!user) return 'username or a known author_id is required';
  const createdMs = input.created_at ? Date.parse(input.created_at) : ctx.now() - (input.age_minutes ?? 0) * 60_000;
  if (Number.isNaN(createdMs)) return `bad created_at ${input.created_at}`;
  if (input.id && (!/^[0-9]{1,19}$/.test(input.id) || findTweet(ctx.state, input.id))) return `id ${input.id} is invalid or taken`;
  const id = input.id ?? nextTweetId(ctx.state, createdMs);
  const parent = input.reply_to ? findTweet(ctx.state, input.reply_to) : undefined;
  if (input.reply_to && !parent) return `reply_to ${input.reply_to} not found`;
  const refs: XStoredTweet['referenced_tweets'] = [];
  if (parent) refs.push({ type: 'replied_to', id: parent.id });
  if (input.retweet_of) refs.push({ type: 'retweeted', id: input.retweet_of });
  if (input.quote_of) refs.push({ type: 'quoted', id: input.quote_of });
  const tweet: XStoredTweet = {
    id,
    text: input.text,
    author_id: user.id,
    created_at: new Date(createdMs).toISOString(),
    lang: input.lang ?? 'en',
    conversation_id: parent?.conversation_id ?? id,
    public_metrics: { retweet_count: 0, reply_count: 0, like_count: 0, quote_count: 0, bookmark_count: 0, impression_count: 0, ...input.public_metrics },
    ...(refs.length ? { referenced_tweets: refs } : {}),
    ...(parent ? { in_reply_to_user_id: parent.author_id } : {}),
  };
  insertTweet(ctx.state, tweet);
  return tweet;
}

function syntheticUser(ctx: Ctx, username: string, extra: Partial<XStoredUser> = {}): XStoredUser {
  const user: XStoredUser = {
    id: (1_800_000_000_000_000_000n + BigInt(ctx.nextId('user'))).toString(),
    username: username.replace(/^@/, ''),
    name: username.replace(/^@/, ''),
    verified: false,
    description: '',
    location: '',
    created_at: new Date(ctx.now() - 365 * 86_400_000).toISOString(),
    public_metrics: { followers_count: 100, following_count: 100, tweet_count: 100, listed_count: 0, like_count: 0 },
    ...extra,
  };
  ctx.state.users.push(user);
  return user;
}

const METRIC_KEYS: (keyof XPublicMetrics)[] = ['retweet_count', 'reply_count', 'like_count', 'quote_count', 'bookmark_count', 'impression_count'];

function control(router: Router, ctx: Ctx) {
  router.post('/generate', (req, res) => {
    const o = (req.body ?? {}) as GenerateOptions;
    if (!Number.isInteger(o.count) || o.count < 1 || o.count > 500_000) return void res.status(400).json({ error: 'count must be an integer between 1 and 500000' });
    if (o.terms !== undefined && (!Array.isArray(o.terms) || o.terms.some((t) => typeof t !== 'string' || !t))) return void res.status(400).json({ error: 'terms must be non-empty strings' });
    if (o.authors !== undefined && (!Number.isInteger(o.authors) || o.authors < 1 || o.authors > 100_000)) return void res.status(400).json({ error: 'authors must be an integer between 1 and 100000' });
    const created = generate(ctx, o);
    res.status(201).json({ generated: created.length, first_id: created[0]!.id, last_id: created[created.length - 1]!.id, total: ctx.state.tweets.length });
  });

  router.post('/tweets', (req, res) => {
    const body = req.body as NewTweet | NewTweet[] | { tweets: NewTweet[] };
    const inputs = Array.isArray(body) ? body : 'tweets' in (body ?? {}) ? (body as { tweets: NewTweet[] }).tweets : [body as NewTweet];
    const created: XStoredTweet[] = [];
    for (const input of inputs) {
      const result = addTweet(ctx, input ?? {});
      if (typeof result === 'string') return void res.status(400).json({ error: result, created });
      created.push(result);
    }
    ctx.changed();
    res.status(201).json({ tweets: created });
  });

  /** Sets the given public metrics (absolute values), e.g. to watch engagement grow between harvests. */
  router.post('/tweets/:id/metrics', (req, res) => {
    const tweet = findTweet(ctx.state, req.params.id!);
    if (!tweet) return void res.status(404).json({ error: `no tweet ${req.params.id}` });
    for (const key of METRIC_KEYS) {
      const value = (req.body ?? {})[key];
      if (value === undefined) continue;
      if (!Number.isInteger(value) || value < 0) return void res.status(400).json({ error: `${key} must be a non-negative integer` });
      tweet.public_metrics[key] = value;
    }
    ctx.changed();
    res.json({ tweet });
  });

  /** Newest first; ?limit=N for the newest N, ?query= to filter with the search language. */
  router.get('/tweets', (req, res) => {
    let predicate: Predicate = () => true;
    if (typeof req.query.query === 'string') {
      try {
        predicate = compile(parseQuery(req.query.query), ctx.state);
      } catch (err) {
        return void res.status(400).json({ error: (err as Error).message });
      }
    }
    const limit = req.query.limit === undefined ? Infinity : Number(req.query.limit);
    const tweets: XStoredTweet[] = [];
    for (let i = ctx.state.tweets.length - 1; i >= 0 && tweets.length < limit; i--) {
      if (predicate(ctx.state.tweets[i]!)) tweets.push(ctx.state.tweets[i]!);
    }
    res.json({ count: tweets.length, total: ctx.state.tweets.length, tweets });
  });

  router.get('/users', (_req, res) => {
    res.json({ users: ctx.state.users });
  });
  router.post('/users', (req, res) => {
    const { username, ...extra } = (req.body ?? {}) as Partial<XStoredUser>;
    if (!username || !/^@?[A-Za-z0-9_]{1,15}$/.test(username)) return void res.status(400).json({ error: 'username must be 1-15 letters, digits or _' });
    if (ctx.state.users.some((u) => u.username.toLowerCase() === username.replace(/^@/, '').toLowerCase())) return void res.status(409).json({ error: `user ${username} exists` });
    const user = syntheticUser(ctx, username, extra);
    ctx.changed();
    res.status(201).json({ user });
  });

  /** Sets the budget of one endpoint (or all) and starts a fresh window; `remaining` starts it part-spent. */
  router.post('/rate-limit', (req, res) => {
    const { limit, windowSeconds, endpoint, remaining } = (req.body ?? {}) as { limit?: number; windowSeconds?: number; endpoint?: Endpoint; remaining?: number };
    const endpoints = endpoint ? [endpoint] : (Object.keys(DEFAULT_LIMITS) as Endpoint[]);
    if (endpoint && !(endpoint in DEFAULT_LIMITS)) return void res.status(400).json({ error: 'endpoint must be search, users or tweets' });
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) return void res.status(400).json({ error: 'limit must be a non-negative integer' });
    if (windowSeconds !== undefined && (!Number.isInteger(windowSeconds) || windowSeconds < 1)) return void res.status(400).json({ error: 'windowSeconds must be a positive integer' });
    const now = Math.floor(ctx.now() / 1000);
    for (const e of endpoints) {
      const cfg = ctx.state.rateLimits[e];
      if (limit !== undefined) cfg.limit = limit;
      if (windowSeconds !== undefined) cfg.windowSeconds = windowSeconds;
      ctx.state.windows[e] = { resetAt: now + cfg.windowSeconds, used: remaining === undefined ? 0 : Math.max(0, cfg.limit - remaining) };
    }
    ctx.changed();
    res.json({ rateLimits: ctx.state.rateLimits, windows: ctx.state.windows });
  });
  router.get('/rate-limit', (_req, res) => {
    res.json({ rateLimits: ctx.state.rateLimits, windows: ctx.state.windows });
  });
}

export const x: ProviderModule<XState> = {
  name: 'x',
  prefixes: ['/x'],
  initialState,
  errorFor,
  routes(router, ctx) {
    router.get('/x/2/tweets/search/recent', searchRecent(ctx));
    router.get('/x/2/tweets', (req, res) => {
      if (!authorized(req, res) || !consume(ctx, 'tweets', res)) return;
      const ids = typeof req.query.ids === 'string' ? req.query.ids.split(',').filter(Boolean) : [];
      lookupTweets(ctx, req, res, ids, false);
    });
    router.get('/x/2/tweets/:id', (req, res) => {
      if (!authorized(req, res) || !consume(ctx, 'tweets', res)) return;
      lookupTweets(ctx, req, res, [req.params.id!], true);
    });
    router.get('/x/2/users/by/username/:username', (req, res) => {
      if (!authorized(req, res) || !consume(ctx, 'users', res)) return;
      lookupUsers(ctx, req, res, [req.params.username!], 'username', 'username', true);
    });
    router.get('/x/2/users/by', (req, res) => {
      if (!authorized(req, res) || !consume(ctx, 'users', res)) return;
      const names = typeof req.query.usernames === 'string' ? req.query.usernames.split(',').filter(Boolean) : [];
      lookupUsers(ctx, req, res, names, 'username', 'usernames', false);
    });
    router.get('/x/2/users/:id', (req, res) => {
      if (!authorized(req, res) || !consume(ctx, 'users', res)) return;
      lookupUsers(ctx, req, res, [req.params.id!], 'id', 'id', true);
    });
  },
  control,
};
