import type { Request, Response, Router } from 'express';
import fixture from '../fixtures/slack.json' with { type: 'json' };
import type { ErrorKind, ProviderContext, ProviderModule, WireError } from '../types.js';

/**
 * Slack stand-in: the Web API methods Prospector calls (under /slack/api/) and
 * incoming webhooks (/slack/webhook/T/B/K), answering like Slack does: HTTP 200
 * with `{ok:false, error}` for API-level failures, 429 + Retry-After for rate
 * limits, plain-text bodies for webhooks. Control routes under /_sandbox/slack.
 */

interface SlackChannel {
  id: string;
  name: string;
  is_private: boolean;
  topic: string;
  purpose: string;
}

interface SlackMetadata {
  event_type: string;
  event_payload: Record<string, unknown>;
}

/** One earlier version of a message, kept when chat.update replaces it. */
interface SlackRevision {
  text: string;
  blocks?: unknown[];
  metadata?: SlackMetadata;
  replaced_at: string;
}

export interface SlackMessage {
  channel: string;
  ts: string;
  text: string;
  blocks?: unknown[];
  metadata?: SlackMetadata;
  thread_ts?: string;
  reply_count?: number;
  user: string;
  bot_id?: string;
  /** How it arrived: the Web API (chat.postMessage), an incoming webhook, or the fixture. */
  source: 'api' | 'webhook' | 'fixture';
  webhook?: string;
  edited?: { user: string; ts: string };
  history: SlackRevision[];
}

export interface SlackState {
  team: { id: string; name: string; domain: string };
  bot: { user_id: string; bot_id: string; app_id: string; user: string };
  channels: SlackChannel[];
  webhooks: Record<string, string>;
  defaultWebhookChannel: string;
  /** In posting order (oldest first). */
  messages: SlackMessage[];
  /** Last ts handed out, in microseconds, so every ts is unique and increasing. */
  lastTsMicros: number;
}

type Ctx = ProviderContext<SlackState>;

interface FixtureMessage {
  channel: string;
  age_minutes: number;
  user: string;
  text: string;
}

function initialState(): SlackState {
  const now = Date.now();
  let lastTsMicros = 0;
  const messages: SlackMessage[] = (fixture.messages as FixtureMessage[]).map((m) => {
    lastTsMicros = Math.max(lastTsMicros + 1, (now - m.age_minutes * 60_000) * 1000);
    return { channel: m.channel, ts: formatTs(lastTsMicros), text: m.text, user: m.user, source: 'fixture', history: [] };
  });
  return {
    team: { ...fixture.team },
    bot: { ...fixture.bot },
    channels: fixture.channels.map((c) => ({ ...c })),
    webhooks: { ...fixture.webhooks },
    defaultWebhookChannel: fixture.defaultWebhookChannel,
    messages,
    lastTsMicros,
  };
}

function formatTs(micros: number): string {
  const seconds = Math.floor(micros / 1_000_000);
  return `${seconds}.${String(micros % 1_000_000).padStart(6, '0')}`;
}

/** A new message timestamp: Slack's ts is both the time and the message id, so it must never repeat. */
function nextTs(ctx: Ctx): string {
  ctx.state.lastTsMicros = Math.max(ctx.state.lastTsMicros + 1, ctx.now() * 1000);
  return formatTs(ctx.state.lastTsMicros);
}

// ---- request helpers --------------------------------------------------------

/** Web API arguments arrive as a form, JSON, or the query string (GET). */
function args(req: Request): Record<string, unknown> {
  const body = req.body && typeof req.body === 'object' ? (req.body as Record<string, unknown>) : {};
  return { ...(req.query as Record<string, unknown>), ...body };
}

function bearer(req: Request, a: Record<string, unknown>): string | undefined {
  const header = req.get('authorization');
  const fromHeader = header?.match(/^Bearer\s+(.*)$/i)?.[1]?.trim();
  const token = fromHeader || (typeof a.token === 'string' ? a.token.trim() : '');
  return token || undefined;
}

/** The SDK JSON-encodes objects inside form bodies; JSON bodies carry them as objects. */
function jsonArg<T>(value: unknown): T | undefined | 'invalid' {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') return value as T;
  try {
    return JSON.parse(value) as T;
  } catch {
    return 'invalid';
  }
}

function str(value: unknown): string | undefined {
  if (typeof value === 'number') return String(value);
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function flag(value: unknown): boolean {
  return value === true || value === 'true' || value === '1' || value === 1;
}

function apiError(res: Response, error: string, extra: Record<string, unknown> = {}) {
  // Slack reports method-level failures with HTTP 200 and ok:false.
  res.status(200).json({ ok: false, error, ...extra });
}

function findChannel(state: SlackState, ref: string | undefined): SlackChannel | undefined {
  if (!ref) return undefined;
  const name = ref.replace(/^#/, '');
  return state.channels.find((c) => c.id === ref || c.name === name);
}

// ---- wire shapes ------------------------------------------------------------

function wireMessage(state: SlackState, m: SlackMessage, withMetadata: boolean) {
  const bot = m.source !== 'fixture';
  return {
    type: 'message',
    ...(bot ? { subtype: m.source === 'webhook' ? 'bot_message' : undefined, bot_id: state.bot.bot_id, app_id: state.bot.app_id } : {}),
    user: m.user,
    text: m.text,
    ts: m.ts,
    team: state.team.id,
    ...(m.blocks ? { blocks: m.blocks } : {}),
    ...(m.thread_ts ? { thread_ts: m.thread_ts } : {}),
    ...(m.reply_count ? { reply_count: m.reply_count } : {}),
    ...(m.edited ? { edited: m.edited } : {}),
    ...(withMetadata && m.metadata ? { metadata: m.metadata } : {}),
  };
}

function wireChannel(c: SlackChannel, created: number) {
  return {
    id: c.id,
    name: c.name,
    is_channel: !c.is_private,
    is_group: c.is_private,
    is_im: false,
    is_private: c.is_private,
    is_archived: false,
    is_general: false,
    is_member: !c.is_private,
    created,
    name_normalized: c.name,
    topic: { value: c.topic, creator: '', last_set: 0 },
    purpose: { value: c.purpose, creator: '', last_set: 0 },
    num_members: 3,
  };
}

/** Opaque cursors, base64 like Slack's, holding an offset into the listing. */
const encodeCursor = (offset: number) => Buffer.from(`offset:${offset}`).toString('base64');
function decodeCursor(cursor: string | undefined): number | undefined | 'invalid' {
  if (!cursor) return undefined;
  const m = Buffer.from(cursor, 'base64').toString('utf8').match(/^offset:(\d+)$/);
  return m ? Number(m[1]) : 'invalid';
}

/** Reads text/blocks/metadata shared by chat.postMessage and chat.update; returns an error code when invalid. */
function content(a: Record<string, unknown>): { text?: string; blocks?: unknown[]; metadata?: SlackMetadata } | string {
  const blocks = jsonArg<unknown[]>(a.blocks);
  if (blocks === 'invalid' || (blocks !== undefined && !Array.isArray(blocks))) return 'invalid_blocks';
  const metadata = jsonArg<SlackMetadata>(a.metadata);
  if (metadata === 'invalid' || (metadata !== undefined && (typeof metadata !== 'object' || typeof metadata.event_type !== 'string'))) {
    return 'invalid_metadata_format';
  }
  const text = typeof a.text === 'string' ? a.text : undefined;
  return { text, blocks, metadata };
}

// ---- Web API ------------------------------------------------------------------

type Method = (ctx: Ctx, a: Record<string, unknown>, res: Response) => void;

const methods: Record<string, Method> = {
  'auth.test'(ctx, _a, res) {
    const { team, bot } = ctx.state;
    res.json({
      ok: true,
      url: `https://${team.domain}.slack.com/`,
      team: team.name,
      user: bot.user,
      team_id: team.id,
      user_id: bot.user_id,
      bot_id: bot.bot_id,
      is_enterprise_install: false,
    });
  },

  'chat.postMessage'(ctx, a, res) {
    const channel = findChannel(ctx.state, str(a.channel));
    if (!channel) return apiError(res, 'channel_not_found');
    if (channel.is_private) return apiError(res, 'not_in_channel');
    const c = content(a);
    if (typeof c === 'string') return apiError(res, c);
    if (!c.text && !c.blocks?.length && !a.attachments) return apiError(res, 'no_text');
    const threadTs = str(a.thread_ts);
    if (threadTs) {
      const parent = ctx.state.messages.find((m) => m.channel === channel.id && m.ts === threadTs);
      if (!parent) return apiError(res, 'thread_not_found');
      parent.reply_count = (parent.reply_count ?? 0) + 1;
    }
    const message: SlackMessage = {
      channel: channel.id,
      ts: nextTs(ctx),
      text: c.text ?? '',
      ...(c.blocks ? { blocks: c.blocks } : {}),
      ...(c.metadata ? { metadata: c.metadata } : {}),
      ...(threadTs ? { thread_ts: threadTs } : {}),
      user: ctx.state.bot.user_id,
      bot_id: ctx.state.bot.bot_id,
      source: 'api',
      history: [],
    };
    ctx.state.messages.push(message);
    ctx.changed();
    res.json({ ok: true, channel: channel.id, ts: message.ts, message: wireMessage(ctx.state, message, false) });
  },

  'chat.update'(ctx, a, res) {
    const channel = findChannel(ctx.state, str(a.channel));
    if (!channel) return apiError(res, 'channel_not_found');
    const ts = str(a.ts);
    const message = ctx.state.messages.find((m) => m.channel === channel.id && m.ts === ts);
    if (!message) return apiError(res, 'message_not_found');
    if (message.source === 'fixture') return apiError(res, 'cant_update_message');
    const c = content(a);
    if (typeof c === 'string') return apiError(res, c);
    if (c.text === undefined && c.blocks === undefined && c.metadata === undefined) return apiError(res, 'no_text');
    message.history.push({
      text: message.text,
      ...(message.blocks ? { blocks: message.blocks } : {}),
      ...(message.metadata ? { metadata: message.metadata } : {}),
      replaced_at: new Date(ctx.now()).toISOString(),
    });
    if (c.text !== undefined) message.text = c.text;
    if (c.blocks !== undefined) message.blocks = c.blocks;
    if (c.metadata !== undefined) message.metadata = c.metadata;
    message.edited = { user: ctx.state.bot.user_id, ts: nextTs(ctx) };
    ctx.changed();
    res.json({ ok: true, channel: channel.id, ts: message.ts, text: message.text, message: wireMessage(ctx.state, message, false) });
  },

  'conversations.history'(ctx, a, res) {
    const channel = findChannel(ctx.state, str(a.channel));
    if (!channel) return apiError(res, 'channel_not_found');
    if (channel.is_private) return apiError(res, 'not_in_channel');
    const limit = Math.min(Math.max(Number(a.limit ?? 100) || 100, 1), 999);
    const offset = decodeCursor(str(a.cursor));
    if (offset === 'invalid') return apiError(res, 'invalid_cursor');
    const oldest = Number(str(a.oldest) ?? 0);
    const latest = str(a.latest) ? Number(a.latest) : Infinity;
    const inclusive = flag(a.inclusive);
    // Top-level messages only (thread replies live in conversations.replies), newest first.
    const all = ctx.state.messages
      .filter((m) => m.channel === channel.id && (!m.thread_ts || m.thread_ts === m.ts))
      .filter((m) => {
        const t = Number(m.ts);
        return inclusive ? t >= oldest && t <= latest : t > oldest && t < latest;
      })
      .reverse();
    const start = offset ?? 0;
    const page = all.slice(start, start + limit);
    const hasMore = start + limit < all.length;
    res.json({
      ok: true,
      messages: page.map((m) => wireMessage(ctx.state, m, flag(a.include_all_metadata))),
      has_more: hasMore,
      pin_count: 0,
      channel_actions_ts: null,
      channel_actions_count: 0,
      response_metadata: { next_cursor: hasMore ? encodeCursor(start + limit) : '' },
    });
  },

  'conversations.replies'(ctx, a, res) {
    const channel = findChannel(ctx.state, str(a.channel));
    if (!channel) return apiError(res, 'channel_not_found');
    const ts = str(a.ts);
    const parent = ctx.state.messages.find((m) => m.channel === channel.id && m.ts === ts);
    if (!parent) return apiError(res, 'thread_not_found');
    const replies = ctx.state.messages.filter((m) => m.channel === channel.id && m.thread_ts === parent.ts && m !== parent);
    res.json({
      ok: true,
      messages: [parent, ...replies].map((m) => wireMessage(ctx.state, m, flag(a.include_all_metadata))),
      has_more: false,
      response_metadata: { next_cursor: '' },
    });
  },

  'conversations.list'(ctx, a, res) {
    const types = (str(a.types) ?? 'public_channel').split(',');
    const channels = ctx.state.channels.filter((c) => types.includes(c.is_private ? 'private_channel' : 'public_channel'));
    const limit = Math.min(Math.max(Number(a.limit ?? 100) || 100, 1), 1000);
    const offset = decodeCursor(str(a.cursor));
    if (offset === 'invalid') return apiError(res, 'invalid_cursor');
    const start = offset ?? 0;
    const created = Math.floor(ctx.now() / 1000) - 86_400 * 30;
    res.json({
      ok: true,
      channels: channels.slice(start, start + limit).map((c) => wireChannel(c, created)),
      response_metadata: { next_cursor: start + limit < channels.length ? encodeCursor(start + limit) : '' },
    });
  },
};

/** Tokens containing "invalid" or "revoked" are refused, so tests can exercise invalid_auth. */
const REFUSED_TOKEN = /invalid|revoked/i;

function handleApi(ctx: Ctx) {
  return (req: Request, res: Response) => {
    const a = args(req);
    const method = methods[req.params.method as string];
    if (!method) return apiError(res, 'unknown_method', { req_method: req.params.method });
    const token = bearer(req, a);
    if (!token) return apiError(res, 'not_authed');
    if (REFUSED_TOKEN.test(token)) return apiError(res, 'invalid_auth');
    method(ctx, a, res);
  };
}

// ---- incoming webhooks ----------------------------------------------------------

function handleWebhook(ctx: Ctx) {
  return (req: Request, res: Response) => {
    const key = `${req.params.team}/${req.params.bot}/${req.params.key}`;
    if (REFUSED_TOKEN.test(key)) return void res.status(403).type('text/plain').send('invalid_token');
    let payload: unknown = req.body;
    // Webhooks also accept a form field `payload` holding the JSON.
    if (payload && typeof payload === 'object' && typeof (payload as { payload?: unknown }).payload === 'string') {
      payload = jsonArg((payload as { payload: string }).payload);
    }
    if (!payload || typeof payload !== 'object' || Array.isArray(payload)) {
      return void res.status(400).type('text/plain').send('invalid_payload');
    }
    const body = payload as { text?: unknown; blocks?: unknown; channel?: unknown };
    if (body.blocks !== undefined && !Array.isArray(body.blocks)) return void res.status(400).type('text/plain').send('invalid_blocks');
    if (body.text !== undefined && typeof body.text !== 'string') return void res.status(400).type('text/plain').send('invalid_payload');
    if (!body.text && !(body.blocks as unknown[] | undefined)?.length) return void res.status(400).type('text/plain').send('no_text');
    const channelId = ctx.state.webhooks[key] ?? ctx.state.defaultWebhookChannel;
    ctx.state.messages.push({
      channel: channelId,
      ts: nextTs(ctx),
      text: (body.text as string | undefined) ?? '',
      ...(body.blocks ? { blocks: body.blocks as unknown[] } : {}),
      user: ctx.state.bot.user_id,
      bot_id: ctx.state.bot.bot_id,
      source: 'webhook',
      webhook: key,
      history: [],
    });
    ctx.changed();
    res.status(200).type('text/plain').send('ok');
  };
}

// ---- errors -------------------------------------------------------------------------

const ERROR_CODES: Record<ErrorKind, string> = {
  error: 'internal_error',
  rate_limit: 'ratelimited',
  unauthorized: 'invalid_auth',
  not_found: 'channel_not_found',
  bad_request: 'invalid_arguments',
};

function errorFor(kind: ErrorKind, status: number, message: string, extra?: Record<string, unknown>): WireError {
  // A Slack error code passed as the message wins (e.g. ctx.fail(res, 'not_found', 200, 'message_not_found')).
  const error = /^[a-z_]+$/.test(message) ? message : ERROR_CODES[kind];
  if (kind === 'rate_limit') {
    return { status: 429, headers: { 'Retry-After': String(extra?.retryAfterSeconds ?? 1) }, body: { ok: false, error: 'ratelimited' } };
  }
  if (kind === 'error') return { status, body: { ok: false, error } };
  // Everything else is an API-level failure: HTTP 200, ok:false.
  return { status: 200, body: { ok: false, error } };
}

// ---- control plane -------------------------------------------------------------------

function control(router: Router, ctx: Ctx) {
  /** Every post (API and webhook) in posting order, with channel names and edit history. */
  router.get('/messages', (req, res) => {
    const ref = typeof req.query.channel === 'string' ? req.query.channel : undefined;
    const channel = ref ? findChannel(ctx.state, ref) : undefined;
    if (ref && !channel) return void res.status(404).json({ error: `no channel ${ref}` });
    const messages = ctx.state.messages
      .filter((m) => !channel || m.channel === channel.id)
      .map((m) => ({ ...m, channel_name: findChannel(ctx.state, m.channel)?.name }));
    res.json({ messages });
  });
  router.get('/channels', (_req, res) => {
    res.json({ channels: ctx.state.channels });
  });
  router.post('/channels', (req, res) => {
    const { id, name, is_private } = (req.body ?? {}) as { id?: string; name?: string; is_private?: boolean };
    if (!name || !/^[a-z0-9_-]+$/.test(name)) return void res.status(400).json({ error: 'name must be a lowercase channel name' });
    if (findChannel(ctx.state, name)) return void res.status(409).json({ error: `channel ${name} exists` });
    const channel: SlackChannel = {
      id: id ?? `C${String(ctx.nextId('channel')).padStart(9, '0')}`,
      name,
      is_private: Boolean(is_private),
      topic: '',
      purpose: '',
    };
    ctx.state.channels.push(channel);
    ctx.changed();
    res.status(201).json({ channel });
  });
}

export const slack: ProviderModule<SlackState> = {
  name: 'slack',
  prefixes: ['/slack'],
  initialState,
  errorFor,
  routes(router, ctx) {
    router.all('/slack/api/:method', handleApi(ctx));
    router.post('/slack/webhook/:team/:bot/:key', handleWebhook(ctx));
  },
  control,
};
