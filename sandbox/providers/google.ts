import { createHash } from 'node:crypto';
import type { NextFunction, Request, Response, Router } from 'express';
import { decodeWords } from 'postal-mime';
import fixture from '../fixtures/google.json' with { type: 'json' };
import type { ErrorKind, ProviderContext, ProviderModule, WireError } from '../types.js';

/**
 * Google stand-in: the OAuth token endpoint, the Gmail v1 and Calendar v3
 * subsets Prospector calls, at the paths googleapis 178 builds from
 * `rootUrl` (the sandbox URL). Errors use Google's JSON shape
 * `{error:{code,message,errors:[{message,domain,reason}],status}}`.
 *
 * Wire API
 *   POST /token                                   refresh_token grant (form-encoded)
 *   GET  /gmail/v1/users/:userId/threads          q, maxResults, pageToken, labelIds, includeSpamTrash
 *   GET  /gmail/v1/users/:userId/threads/:id      format=full|metadata|minimal, metadataHeaders
 *   GET  /gmail/v1/users/:userId/messages         q, maxResults, pageToken, labelIds
 *   GET  /gmail/v1/users/:userId/messages/:id     format=full|metadata|minimal|raw
 *   POST /gmail/v1/users/:userId/messages/send    {raw, threadId?}  (also /upload/... media/multipart)
 *   POST /gmail/v1/users/:userId/drafts           {message:{raw, threadId?}}  (also /upload/...)
 *   GET  /gmail/v1/users/:userId/drafts           q, maxResults, pageToken
 *   GET  /gmail/v1/users/:userId/drafts/:id       format
 *   PUT  /gmail/v1/users/:userId/drafts/:id       {message:{raw, threadId?}}  (also /upload/...)
 *   POST /gmail/v1/users/:userId/drafts/send      {id, message?}
 *   DELETE /gmail/v1/users/:userId/drafts/:id
 *   POST /calendar/v3/freeBusy                    {timeMin, timeMax, timeZone?, items:[{id}]}
 *   POST /calendar/v3/calendars/:calendarId/events          (client-chosen `id` honoured; 409 if taken)
 *   GET|DELETE /calendar/v3/calendars/:calendarId/events/:eventId
 *   `users/me` is the sandbox user (fixtures: sales@prospector.example); any other
 *   address is its own (initially empty) mailbox. Gmail/Calendar need any non-empty bearer.
 *
 * Threading: a message/draft joins `threadId` when given (404 if unknown), else the
 * thread holding a Message-ID named in In-Reply-To/References, else a new thread whose
 * id is the message id (as Gmail does). drafts.update without threadId keeps the
 * draft's thread. Sending adds Message-ID, Date and From when missing.
 * Search `q`: from: to: cc: bcc: subject: rfc822msgid: newer_than:/older_than:(d|m|y)
 * after:/before: in: is: label: has:attachment, bare words and "quoted phrases"
 * (subject, body, from, to), `-negation`, `OR`, `{a b}` (any of), `( )`; terms AND.
 *
 * Control (under /_sandbox/google)
 *   GET  /drafts    decoded drafts: [{id, messageId, threadId, mailbox, from, to, cc, subject, body,
 *                   rfc822MessageId, headers (lower-case keys), labelIds, date}]
 *   GET  /sent      decoded SENT messages, same shape (id = Gmail message id)
 *   GET  /threads   [{id, mailbox, subject, messages: [decoded]}]
 *   GET  /events    [{calendarId, ...event resource}]
 *   POST /threads   seed one thread: {mailbox?, messages:[{from, to, cc?, subject, body, html?,
 *                   ageDays?|ageHours?|date?, messageId?, labelIds?, headers?}]} -> {threadId, messages:[{id, messageId}]}
 *   POST /busy      add busy blocks: {calendarId?, blocks:[{start, end, summary?}]} -> {calendarId, blocks}
 *   POST /revoke    {refreshToken}: later refreshes with it get invalid_grant
 *   POST /settings  {searchLagMs}: messages written (created, updated, sent) stay out of `q`
 *                   searches this long, as Gmail's index lags writes; direct reads see them at once
 *
 * MIME parsing (parseMessage, about 120 lines) is ours; postal-mime gives only its
 * `decodeWords`. Its `parse` flattens a message to text/html/attachments where
 * `format=full` must answer Gmail's part tree (partId, each part's headers and
 * body), leaves its header list RFC 2047-encoded, has no text for an HTML-only
 * message, is async where initialState() seeds synchronously, and took 92–108 µs
 * per seeded message against 18 µs for ours (measured on this machine).
 */

// ---- state ------------------------------------------------------------------

interface Header {
  name: string;
  value: string;
}

export interface GmailMessage {
  id: string;
  threadId: string;
  /** Mailbox (address) holding the message. */
  mailbox: string;
  labelIds: string[];
  internalDate: number;
  historyId: string;
  /** The RFC 2822 message as Gmail keeps it, base64url. */
  raw: string;
  /** Top-level headers, unfolded and RFC 2047-decoded (search and control views). */
  headers: Header[];
  /** Plain-text body: the text/plain part, else the HTML part stripped. */
  text: string;
  hasAttachment: boolean;
  /** When search can first see it (settings.searchLagMs after a write); absent: at once. */
  indexedAt?: number;
}

export interface GmailDraft {
  id: string;
  mailbox: string;
  messageId: string;
}

export interface WeeklyBusy {
  /** Two-letter days, as in RRULE: MO TU WE TH FR SA SU. */
  days: string[];
  /** Wall-clock HH:MM in the calendar's (or the rule's) time zone. */
  start: string;
  end: string;
  summary?: string;
  timeZone?: string;
}

export interface BusyBlock {
  start: string;
  end: string;
  summary?: string;
}

export interface SandboxCalendar {
  id: string;
  summary: string;
  timeZone: string;
  weekly: WeeklyBusy[];
  blocks: BusyBlock[];
}

export interface CalendarEvent {
  calendarId: string;
  startMs: number;
  endMs: number;
  resource: Record<string, unknown> & { id: string; status: string; transparency?: string };
}

export interface GoogleState {
  user: string;
  oauth: { grants: number; lastGrantAt?: string; revokedRefreshTokens: string[] };
  messages: GmailMessage[];
  drafts: GmailDraft[];
  calendars: SandboxCalendar[];
  events: CalendarEvent[];
  /** Gmail's search index lags writes: a message written now is missing from `q` searches this long. */
  settings?: { searchLagMs: number };
}

interface SeedMessage {
  from: string;
  to: string;
  cc?: string;
  subject: string;
  body: string;
  html?: string;
  ageDays?: number;
  ageHours?: number;
  /** ISO time; wins over ageDays/ageHours. */
  date?: string;
  messageId?: string;
  labelIds?: string[];
  headers?: Record<string, string>;
}

interface GoogleFixture {
  user: string;
  revokedRefreshTokens: string[];
  threads: { messages: SeedMessage[] }[];
  calendars: (Omit<SandboxCalendar, 'blocks'> & {
    blocks: { businessDayOffset: number; start: string; end: string; summary?: string }[];
  })[];
}

type Ctx = ProviderContext<GoogleState>;

// ---- ids --------------------------------------------------------------------

interface IdSource {
  message(): string;
  history(): string;
}

// Gmail ids are 16 hex digits; fixtures and runtime draw from separate ranges.
const FIXTURE_ID_BASE = 0x18a3c2d400000000n;
const RUNTIME_ID_BASE = 0x19b7e5f100000000n;
const gmailId = (base: bigint, n: number) => (base + BigInt(n) * 0x1d3n).toString(16);
const draftId = (n: number) => `r-${1_843_000_000_000_000_000n + BigInt(n) * 104_729n}`;

function fixtureIds(): IdSource {
  let m = 0;
  let h = 0;
  return { message: () => gmailId(FIXTURE_ID_BASE, ++m), history: () => String(1000 + ++h) };
}

function runtimeIds(ctx: Ctx): IdSource {
  return {
    message: () => gmailId(RUNTIME_ID_BASE, ctx.nextId('message')),
    history: () => String(100_000 + ctx.nextId('history')),
  };
}

/** Calendar event ids are base32hex (a-v, 0-9). */
function eventId(n: number): string {
  const digest = createHash('sha1').update(`sandbox-event-${n}`).digest();
  const alphabet = '0123456789abcdefghijklmnopqrstuv';
  return Array.from(digest.subarray(0, 13), (b) => alphabet[b % 32]).join('') + n.toString(32);
}

// ---- errors -----------------------------------------------------------------

const GOOGLE_STATUS: Record<number, { reason: string; status: string; domain?: string }> = {
  400: { reason: 'invalidArgument', status: 'INVALID_ARGUMENT' },
  401: { reason: 'authError', status: 'UNAUTHENTICATED' },
  403: { reason: 'forbidden', status: 'PERMISSION_DENIED' },
  404: { reason: 'notFound', status: 'NOT_FOUND' },
  409: { reason: 'duplicate', status: 'ALREADY_EXISTS' },
  // Gmail and Calendar report rate limits in the usageLimits domain.
  429: { reason: 'rateLimitExceeded', status: 'RESOURCE_EXHAUSTED', domain: 'usageLimits' },
  500: { reason: 'backendError', status: 'INTERNAL' },
  502: { reason: 'backendError', status: 'UNAVAILABLE' },
  503: { reason: 'backendError', status: 'UNAVAILABLE' },
  504: { reason: 'backendError', status: 'DEADLINE_EXCEEDED' },
};

function googleError(kind: ErrorKind, status: number, message: string, extra?: Record<string, unknown>): WireError {
  const known = GOOGLE_STATUS[status] ?? (status >= 500 ? GOOGLE_STATUS[500]! : { reason: 'failedPrecondition', status: 'FAILED_PRECONDITION' });
  const headers: Record<string, string> = {};
  if (status === 429 || kind === 'rate_limit') headers['Retry-After'] = String(extra?.retryAfterSeconds ?? 1);
  if (status === 401) headers['WWW-Authenticate'] = 'Bearer realm="https://accounts.google.com/"';
  const detail = {
    message,
    domain: (extra?.domain as string | undefined) ?? known.domain ?? 'global',
    reason: (extra?.reason as string | undefined) ?? known.reason,
    ...(extra?.location ? { location: extra.location, locationType: extra.locationType ?? 'parameter' } : {}),
  };
  return { status, headers, body: { error: { code: status, message, errors: [detail], status: known.status } } };
}

function kindFor(status: number): ErrorKind {
  if (status === 429) return 'rate_limit';
  if (status === 401) return 'unauthorized';
  if (status === 404) return 'not_found';
  return status >= 500 ? 'error' : 'bad_request';
}

function fail(ctx: Ctx, res: Response, status: number, message: string, extra?: Record<string, unknown>) {
  ctx.fail(res, kindFor(status), status, message, extra);
}

const NOT_FOUND = 'Requested entity was not found.';

/** A request problem found while handling it: answered as a Google error. */
class RequestProblem extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra?: Record<string, unknown>,
  ) {
    super(message);
  }
}

/** Runs a handler, turning RequestProblem into Google's error shape. */
function handle(ctx: Ctx, fn: (req: Request, res: Response) => void | Promise<void>) {
  return async (req: Request, res: Response) => {
    try {
      await fn(req, res);
    } catch (err) {
      if (!(err instanceof RequestProblem)) throw err;
      fail(ctx, res, err.status, err.message, err.extra);
    }
  };
}

// ---- MIME -------------------------------------------------------------------

interface MimeNode {
  headers: Header[];
  mimeType: string;
  params: Record<string, string>;
  filename: string;
  /** Transfer-decoded content (leaves only). */
  body: Buffer;
  parts: MimeNode[];
}

/** Splits a latin1 ("binary") string into its header block and body. */
function splitHeadBody(src: string): { head: string; body: string } {
  const leading = /^\r?\n/.exec(src);
  if (leading) return { head: '', body: src.slice(leading[0].length) };
  const m = /\r?\n\r?\n/.exec(src);
  if (!m) return { head: src, body: '' };
  return { head: src.slice(0, m.index), body: src.slice(m.index + m[0].length) };
}

function decodeHeaderValue(latin1: string): string {
  // 8-bit header bytes are taken as UTF-8; encoded words (RFC 2047) are decoded.
  const text = /[\x80-\xff]/.test(latin1) ? Buffer.from(latin1, 'latin1').toString('utf8') : latin1;
  return text.includes('=?') ? decodeWords(text) : text;
}

function parseHeaderBlock(head: string): Header[] {
  const headers: Header[] = [];
  for (const line of head.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && headers.length) {
      headers[headers.length - 1]!.value += ` ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    headers.push({ name: line.slice(0, colon).trim(), value: line.slice(colon + 1).trim() });
  }
  return headers.map((h) => ({ name: h.name, value: decodeHeaderValue(h.value) }));
}

function headerOf(headers: Header[], name: string): string | undefined {
  const lower = name.toLowerCase();
  return headers.find((h) => h.name.toLowerCase() === lower)?.value;
}

/** `type/sub; a=b; c="d"` → type and parameters (RFC 2231 `name*=` values decoded). */
function parseParams(value: string): { type: string; params: Record<string, string> } {
  const [first = '', ...rest] = value.split(/;(?=(?:[^"]*"[^"]*")*[^"]*$)/);
  const params: Record<string, string> = {};
  for (const piece of rest) {
    const eq = piece.indexOf('=');
    if (eq < 0) continue;
    let key = piece.slice(0, eq).trim().toLowerCase();
    let val = piece.slice(eq + 1).trim();
    if (val.startsWith('"') && val.endsWith('"')) val = val.slice(1, -1).replace(/\\(.)/g, '$1');
    if (key.endsWith('*')) {
      key = key.slice(0, -1);
      const m = /^[^']*'[^']*'(.*)$/.exec(val);
      try {
        val = decodeURIComponent(m ? m[1]! : val);
      } catch {
        /* keep as written */
      }
    }
    params[key] = decodeHeaderValue(val);
  }
  return { type: first.trim().toLowerCase() || 'text/plain', params };
}

function splitMultipart(body: string, boundary: string): string[] {
  const delimiter = `--${boundary}`;
  const parts: string[] = [];
  let current: string[] | undefined;
  for (const line of body.split(/\r?\n/)) {
    const trimmed = line.trimEnd();
    if (trimmed === `${delimiter}--`) {
      if (current) parts.push(current.join('\r\n'));
      return parts;
    }
    if (trimmed === delimiter) {
      if (current) parts.push(current.join('\r\n'));
      current = [];
      continue;
    }
    current?.push(line);
  }
  if (current) parts.push(current.join('\r\n'));
  return parts;
}

function decodeQuotedPrintable(src: string): Buffer {
  const soft = src.replace(/=\r?\n/g, '');
  const bytes: number[] = [];
  for (let i = 0; i < soft.length; i++) {
    const hex = soft.slice(i + 1, i + 3);
    if (soft[i] === '=' && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(soft.charCodeAt(i) & 0xff);
    }
  }
  return Buffer.from(bytes);
}

function decodeTransfer(body: string, encoding: string): Buffer {
  switch (encoding) {
    case 'base64':
      return Buffer.from(body.replace(/[^A-Za-z0-9+/=]/g, ''), 'base64');
    case 'quoted-printable':
      return decodeQuotedPrintable(body);
    default:
      return Buffer.from(body, 'latin1');
  }
}

function parseNode(src: string, defaultType: string, depth = 0): MimeNode {
  const { head, body } = splitHeadBody(src);
  const headers = parseHeaderBlock(head);
  const { type, params } = parseParams(headerOf(headers, 'content-type') ?? defaultType);
  const disposition = parseParams(headerOf(headers, 'content-disposition') ?? 'inline');
  const filename = disposition.params.filename ?? params.name ?? '';
  if (type.startsWith('multipart/') && params.boundary && depth < 20) {
    const childType = type === 'multipart/digest' ? 'message/rfc822' : 'text/plain';
    const parts = splitMultipart(body, params.boundary).map((p) => parseNode(p, childType, depth + 1));
    return { headers, mimeType: type, params, filename, body: Buffer.alloc(0), parts };
  }
  const encoding = (headerOf(headers, 'content-transfer-encoding') ?? '7bit').trim().toLowerCase();
  return { headers, mimeType: type, params, filename, body: decodeTransfer(body, encoding), parts: [] };
}

/** Parses an RFC 2822 message; throws RequestProblem when it has no header section. */
function parseMessage(bytes: Buffer): MimeNode {
  const src = bytes.toString('latin1');
  if (!/^[!-9;-~]+:/.test(src)) {
    throw new RequestProblem(400, 'Invalid raw message: it must start with an RFC 2822 header section');
  }
  return parseNode(src, 'text/plain');
}

function decodeText(buf: Buffer, charset = 'utf-8'): string {
  try {
    return new TextDecoder(charset).decode(buf);
  } catch {
    return buf.toString('utf8');
  }
}

function isAttachment(node: MimeNode): boolean {
  return Boolean(node.filename) || /^attachment/i.test(headerOf(node.headers, 'content-disposition') ?? '');
}

function leaves(node: MimeNode): MimeNode[] {
  return node.parts.length ? node.parts.flatMap(leaves) : [node];
}

function htmlToText(html: string): string {
  return html
    .replace(/<(style|script)[\s\S]*?<\/\1>/gi, '')
    .replace(/<br\s*\/?>|<\/(p|div|li|tr|h\d)>/gi, '\n')
    .replace(/<[^>]+>/g, '')
    .replace(/&nbsp;/g, ' ')
    .replace(/&ndash;/g, '–')
    .replace(/&mdash;/g, '—')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

function summarise(root: MimeNode): Pick<GmailMessage, 'headers' | 'text' | 'hasAttachment'> {
  const all = leaves(root);
  const content = all.filter((n) => !isAttachment(n));
  const plain = content.find((n) => n.mimeType === 'text/plain');
  const html = content.find((n) => n.mimeType === 'text/html');
  const text = plain
    ? decodeText(plain.body, plain.params.charset)
    : html
      ? htmlToText(decodeText(html.body, html.params.charset))
      : '';
  return { headers: root.headers, text: text.replace(/\r\n/g, '\n').trimEnd(), hasAttachment: all.some(isAttachment) };
}

/** Gmail returns standard-alphabet-free, padded base64url. */
const base64url = (buf: Buffer) => buf.toString('base64').replace(/\+/g, '-').replace(/\//g, '_');

function toPayload(node: MimeNode, partId: string, messageId: string): Record<string, unknown> {
  const base = { partId, mimeType: node.mimeType, filename: node.filename, headers: node.headers };
  if (node.parts.length) {
    const parts = node.parts.map((p, i) => toPayload(p, partId === '' ? String(i) : `${partId}.${i}`, messageId));
    return { ...base, body: { size: 0 }, parts };
  }
  if (isAttachment(node)) {
    return { ...base, body: { attachmentId: `ANGjdJ_${messageId}_${partId || '0'}`, size: node.body.length } };
  }
  return { ...base, body: node.body.length ? { size: node.body.length, data: base64url(node.body) } : { size: 0 } };
}

function snippetOf(text: string): string {
  // Gmail snippets are whitespace-collapsed, cut short and HTML-escaped.
  return text
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 200)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

// ---- composing seeded mail --------------------------------------------------

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad2 = (n: number) => String(n).padStart(2, '0');

function rfc2822Date(ms: number): string {
  const d = new Date(ms);
  const time = `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}`;
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${time} +0000`;
}

const isAscii = (s: string) => /^[\x00-\x7f]*$/.test(s);
const encodeWord = (s: string) => (isAscii(s) ? s : `=?UTF-8?B?${Buffer.from(s).toString('base64')}?=`);

function textPart(type: 'plain' | 'html', content: string): string {
  const crlf = content.replace(/\r?\n/g, '\r\n');
  if (isAscii(content)) {
    return `Content-Type: text/${type}; charset="UTF-8"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n${crlf}`;
  }
  const b64 = Buffer.from(crlf).toString('base64').replace(/.{76}/g, '$&\r\n');
  return `Content-Type: text/${type}; charset="UTF-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n${b64}`;
}

function composeSeed(m: SeedMessage, date: number, messageId: string, inReplyTo?: string, references?: string): Buffer {
  const lines = [
    `From: ${m.from}`,
    `To: ${m.to}`,
    ...(m.cc ? [`Cc: ${m.cc}`] : []),
    `Subject: ${encodeWord(m.subject)}`,
    `Date: ${rfc2822Date(date)}`,
    `Message-ID: ${messageId}`,
    ...(inReplyTo ? [`In-Reply-To: ${inReplyTo}`] : []),
    ...(references ? [`References: ${references}`] : []),
    ...Object.entries(m.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
    'MIME-Version: 1.0',
  ];
  let body: string;
  if (m.html) {
    const boundary = `000000000000${createHash('sha1').update(messageId).digest('hex').slice(0, 16)}`;
    body = [
      `Content-Type: multipart/alternative; boundary="${boundary}"`,
      '',
      `--${boundary}`,
      textPart('plain', m.body),
      `--${boundary}`,
      textPart('html', m.html),
      `--${boundary}--`,
      '',
    ].join('\r\n');
  } else {
    body = textPart('plain', m.body);
  }
  return Buffer.from(`${lines.join('\r\n')}\r\n${body}`, 'utf8');
}

function addressOf(value: string | undefined): string {
  const m = /<([^>]+)>/.exec(value ?? '');
  return (m ? m[1]! : (value ?? '')).trim().toLowerCase();
}

function seedDate(m: SeedMessage, now: number): number {
  if (m.date) return Date.parse(m.date);
  return now - (m.ageDays ?? 0) * 86_400_000 - (m.ageHours ?? 0) * 3_600_000;
}

/** Adds one thread of messages (oldest first), chaining In-Reply-To/References. */
function seedThread(state: GoogleState, mailbox: string, seeds: SeedMessage[], ids: IdSource, now: number) {
  let threadId: string | undefined;
  const chain: string[] = [];
  const created: GmailMessage[] = [];
  for (const seed of seeds) {
    const id = ids.message();
    threadId ??= id;
    const rfcId = seed.messageId ?? `<seed-${id}@${addressOf(seed.from).split('@')[1] ?? 'sandbox.example'}>`;
    const date = seedDate(seed, now);
    const bytes = composeSeed(seed, date, rfcId, chain.at(-1), chain.length ? chain.join(' ') : undefined);
    chain.push(rfcId);
    const fromUs = addressOf(seed.from) === mailbox;
    const labelIds = seed.labelIds ?? (fromUs ? ['SENT'] : ['INBOX']);
    created.push(storeMessage(state, { id, historyId: ids.history(), mailbox, threadId, labelIds, internalDate: date, bytes }));
  }
  return { threadId: threadId!, messages: created };
}

function storeMessage(
  state: GoogleState,
  m: { id: string; historyId: string; mailbox: string; threadId: string; labelIds: string[]; internalDate: number; bytes: Buffer },
): GmailMessage {
  const message: GmailMessage = {
    id: m.id,
    threadId: m.threadId,
    mailbox: m.mailbox,
    labelIds: m.labelIds,
    internalDate: m.internalDate,
    historyId: m.historyId,
    raw: base64url(m.bytes),
    ...summarise(parseMessage(m.bytes)),
  };
  state.messages.push(message);
  return message;
}

// ---- search -----------------------------------------------------------------

type QueryNode =
  | { kind: 'and' | 'or'; items: QueryNode[] }
  | { kind: 'not'; item: QueryNode }
  | { kind: 'term'; op?: string; value: string };

interface Token {
  type: '(' | ')' | '{' | '}' | 'OR' | 'AND' | 'term';
  negate?: boolean;
  op?: string;
  value?: string;
}

function tokenize(q: string): Token[] {
  const tokens: Token[] = [];
  const re = /\s*(?:([(){}])|(-)?(?:([A-Za-z_][A-Za-z0-9_]*):)?(?:"([^"]*)"?|([^\s(){}"]+)))/y;
  while (re.lastIndex < q.length) {
    const at = re.lastIndex;
    const m = re.exec(q);
    if (!m || m[0].length === 0) {
      if (!q.slice(at).trim()) break;
      re.lastIndex = at + 1;
      continue;
    }
    if (m[1]) tokens.push({ type: m[1] as Token['type'] });
    else if (!m[2] && !m[3] && (m[5] === 'OR' || m[5] === 'AND')) tokens.push({ type: m[5] });
    else tokens.push({ type: 'term', negate: Boolean(m[2]), op: m[3]?.toLowerCase(), value: m[4] ?? m[5] ?? '' });
  }
  return tokens;
}

function parseQuery(q: string): QueryNode {
  const tokens = tokenize(q);
  let i = 0;
  const sequence = (end?: Token['type']): QueryNode[] => {
    const items: QueryNode[] = [];
    while (i < tokens.length && tokens[i]!.type !== end) items.push(disjunction(end));
    if (end && i < tokens.length) i++;
    return items;
  };
  const disjunction = (end?: Token['type']): QueryNode => {
    const alternatives = [unary()];
    while (tokens[i]?.type === 'OR') {
      i++;
      if (i < tokens.length && tokens[i]!.type !== end) alternatives.push(unary());
    }
    return alternatives.length === 1 ? alternatives[0]! : { kind: 'or', items: alternatives };
  };
  const unary = (): QueryNode => {
    const t = tokens[i++]!;
    if (t.type === '(') return { kind: 'and', items: sequence(')') };
    if (t.type === '{') return { kind: 'or', items: sequence('}') };
    if (t.type !== 'term') return { kind: 'and', items: [] };
    const term: QueryNode = { kind: 'term', op: t.op, value: t.value ?? '' };
    return t.negate ? { kind: 'not', item: term } : term;
  };
  return { kind: 'and', items: sequence() };
}

const LABEL_WORDS: Record<string, string> = {
  sent: 'SENT',
  draft: 'DRAFT',
  drafts: 'DRAFT',
  inbox: 'INBOX',
  unread: 'UNREAD',
  starred: 'STARRED',
  important: 'IMPORTANT',
  trash: 'TRASH',
  spam: 'SPAM',
  chats: 'CHAT',
};

const UNIT_MS: Record<string, number> = { d: 86_400_000, m: 30 * 86_400_000, y: 365 * 86_400_000 };

function relativeMs(value: string): number | undefined {
  const m = /^(\d+)([dmy])$/i.exec(value);
  return m ? Number(m[1]) * UNIT_MS[m[2]!.toLowerCase()]! : undefined;
}

function absoluteMs(value: string): number | undefined {
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const m = /^(\d{4})[/-](\d{1,2})[/-](\d{1,2})$/.exec(value);
  return m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) : undefined;
}

const normMessageId = (v: string) => v.trim().replace(/^<|>$/g, '').toLowerCase();

function messageIdsIn(value: string | undefined): string[] {
  if (!value) return [];
  const bracketed = value.match(/<[^>]+>/g);
  return (bracketed ?? value.split(/\s+/)).map(normMessageId).filter(Boolean);
}

function labelMatches(word: string, labels: string[]): boolean {
  if (word === 'anywhere') return true;
  if (word === 'read') return !labels.includes('UNREAD');
  const wanted = LABEL_WORDS[word];
  if (wanted) return labels.includes(wanted);
  const norm = (s: string) => s.toLowerCase().replace(/[-_ /]/g, '-');
  return labels.some((l) => norm(l) === norm(word));
}

function termMatches(op: string | undefined, value: string, m: GmailMessage, now: number): boolean {
  const v = value.toLowerCase();
  const h = (name: string) => (headerOf(m.headers, name) ?? '').toLowerCase();
  switch (op) {
    case 'from':
      return h('from').includes(v);
    case 'to':
      return ['to', 'cc', 'bcc'].some((n) => h(n).includes(v));
    case 'cc':
    case 'bcc':
    case 'subject':
      return h(op).includes(v);
    case 'rfc822msgid':
      return normMessageId(h('message-id')) === normMessageId(v);
    case 'newer_than':
    case 'older_than': {
      const span = relativeMs(v);
      if (span === undefined) return false;
      return op === 'newer_than' ? m.internalDate > now - span : m.internalDate < now - span;
    }
    case 'after':
    case 'before': {
      const at = absoluteMs(v);
      if (at === undefined) return false;
      return op === 'after' ? m.internalDate >= at : m.internalDate < at;
    }
    case 'in':
    case 'is':
    case 'label':
      return labelMatches(v, m.labelIds);
    case 'has':
      return v === 'attachment' ? m.hasAttachment : false;
    default: {
      const word = op ? `${op}:${v}` : v;
      const haystack = [h('subject'), h('from'), h('to'), h('cc'), m.text.toLowerCase()].join('\n');
      return haystack.includes(word);
    }
  }
}

function evaluate(node: QueryNode, m: GmailMessage, now: number): boolean {
  switch (node.kind) {
    case 'and':
      return node.items.every((n) => evaluate(n, m, now));
    case 'or':
      return node.items.length === 0 || node.items.some((n) => evaluate(n, m, now));
    case 'not':
      return !evaluate(node.item, m, now);
    case 'term':
      return termMatches(node.op, node.value, m, now);
  }
}

function asList(value: unknown): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).map(String);
}

/** Messages of a mailbox matching q / labelIds, newest first (Gmail's order). */
function selectMessages(ctx: Ctx, mailbox: string, query: Request['query'], pool?: GmailMessage[]): GmailMessage[] {
  const q = typeof query.q === 'string' ? query.q : '';
  const labelIds = asList(query.labelIds);
  const withSpamTrash = query.includeSpamTrash === 'true' || /\bin:(trash|spam|anywhere)\b/i.test(q);
  const tree = parseQuery(q);
  const now = ctx.now();
  const searching = q.trim() !== '';
  const selected = (pool ?? ctx.state.messages).filter(
    (m) =>
      m.mailbox === mailbox &&
      (!searching || (m.indexedAt ?? 0) <= now) &&
      (withSpamTrash || !m.labelIds.some((l) => l === 'SPAM' || l === 'TRASH')) &&
      labelIds.every((l) => m.labelIds.includes(l)) &&
      evaluate(tree, m, now),
  );
  return newestFirst(selected);
}

function newestFirst(messages: GmailMessage[]): GmailMessage[] {
  return messages
    .map((m, i) => ({ m, i }))
    .sort((a, b) => b.m.internalDate - a.m.internalDate || b.i - a.i)
    .map((x) => x.m);
}

function paginate<T>(items: T[], query: Request['query'], defaultMax = 100): { page: T[]; nextPageToken?: string } {
  const max = query.maxResults === undefined ? defaultMax : Number(query.maxResults);
  if (!Number.isInteger(max) || max < 0) throw new RequestProblem(400, `Invalid maxResults: ${String(query.maxResults)}`);
  const size = Math.min(max || defaultMax, 500);
  let offset = 0;
  if (typeof query.pageToken === 'string' && query.pageToken) {
    const decoded = /^o(\d+)$/.exec(Buffer.from(query.pageToken, 'base64url').toString('latin1'));
    if (!decoded) throw new RequestProblem(400, 'Invalid pageToken');
    offset = Number(decoded[1]);
  }
  const page = items.slice(offset, offset + size);
  const next = offset + size < items.length ? Buffer.from(`o${offset + size}`).toString('base64url') : undefined;
  return next ? { page, nextPageToken: next } : { page };
}

// ---- Gmail resources ---------------------------------------------------------

const FORMATS = new Set(['full', 'metadata', 'minimal', 'raw']);

function formatMessage(m: GmailMessage, query: Request['query'], allowRaw = true): Record<string, unknown> {
  const format = typeof query.format === 'string' ? query.format.toLowerCase() : 'full';
  if (!FORMATS.has(format) || (format === 'raw' && !allowRaw)) {
    throw new RequestProblem(400, `Invalid value for "format": ${format}`, { location: 'format' });
  }
  const bytes = Buffer.from(m.raw, 'base64url');
  const base = {
    id: m.id,
    threadId: m.threadId,
    labelIds: m.labelIds,
    snippet: snippetOf(m.text),
    sizeEstimate: bytes.length,
    historyId: m.historyId,
    internalDate: String(m.internalDate),
  };
  if (format === 'minimal') return base;
  if (format === 'raw') return { ...base, raw: m.raw };
  const root = parseMessage(bytes);
  if (format === 'metadata') {
    const wanted = asList(query.metadataHeaders).map((n) => n.toLowerCase());
    const headers = wanted.length ? root.headers.filter((h) => wanted.includes(h.name.toLowerCase())) : root.headers;
    return { ...base, payload: { mimeType: root.mimeType, headers } };
  }
  return { ...base, payload: toPayload(root, '', m.id) };
}

function mailboxOf(ctx: Ctx, req: Request): string {
  const userId = String(req.params.userId ?? '');
  if (userId === 'me') return ctx.state.user;
  if (!/^[^@\s]+@[^@\s]+$/.test(userId)) throw new RequestProblem(400, 'Invalid user id specified in request/Delegation denied');
  return userId.toLowerCase();
}

function findMessage(ctx: Ctx, mailbox: string, id: string): GmailMessage {
  const m = ctx.state.messages.find((x) => x.id === id && x.mailbox === mailbox);
  if (!m) throw new RequestProblem(404, NOT_FOUND);
  return m;
}

function findDraft(ctx: Ctx, mailbox: string, id: unknown): GmailDraft {
  const d = ctx.state.drafts.find((x) => x.id === id && x.mailbox === mailbox);
  if (!d) throw new RequestProblem(404, NOT_FOUND);
  return d;
}

/** What the caller sent as a message: base64url `raw` (JSON) or bytes (upload). */
interface MessageInput {
  raw?: unknown;
  bytes?: Buffer;
  threadId?: unknown;
}

function decodeRaw(input: MessageInput | undefined, field: string): Buffer {
  if (input?.bytes) return input.bytes;
  const raw = input?.raw;
  if (raw === undefined || raw === null || raw === '') {
    throw new RequestProblem(400, "'raw' RFC822 payload message string or uploading message via /upload/* URL required", { location: field });
  }
  if (typeof raw !== 'string' || !/^[A-Za-z0-9+/_=\s-]+$/.test(raw)) {
    throw new RequestProblem(400, `Invalid value at '${field}' (TYPE_BYTES), Base64 decoding failed`, { location: field });
  }
  const bytes = Buffer.from(raw.replace(/\s/g, '').replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (!bytes.length) throw new RequestProblem(400, `Invalid value at '${field}' (TYPE_BYTES), Base64 decoding failed`, { location: field });
  return bytes;
}

/** Adds the headers Gmail fills in (From always; Message-ID and Date when sending). */
function completeHeaders(ctx: Ctx, bytes: Buffer, mailbox: string, sending: boolean): Buffer {
  const root = parseMessage(bytes);
  const added: string[] = [];
  if (!headerOf(root.headers, 'from')) added.push(`From: ${mailbox}`);
  if (sending && !headerOf(root.headers, 'date')) added.push(`Date: ${rfc2822Date(ctx.now())}`);
  if (sending && !headerOf(root.headers, 'message-id')) {
    added.push(`Message-ID: <CA+sbx${ctx.nextId('rfc822').toString(36)}${mailbox.length}@mail.gmail.com>`);
  }
  return added.length ? Buffer.concat([Buffer.from(`${added.join('\r\n')}\r\n`), bytes]) : bytes;
}

function requireRecipients(bytes: Buffer) {
  const headers = parseMessage(bytes).headers;
  if (!['to', 'cc', 'bcc'].some((n) => headerOf(headers, n)?.trim())) {
    throw new RequestProblem(400, 'Recipient address required');
  }
}

/** Thread for a new message: explicit threadId, else by In-Reply-To/References, else new. */
function resolveThread(ctx: Ctx, mailbox: string, requested: unknown, bytes: Buffer): string | undefined {
  if (requested !== undefined && requested !== null && requested !== '') {
    if (typeof requested !== 'string') throw new RequestProblem(400, 'Invalid threadId', { location: 'threadId' });
    if (!ctx.state.messages.some((m) => m.mailbox === mailbox && m.threadId === requested)) throw new RequestProblem(404, NOT_FOUND);
    return requested;
  }
  const headers = parseMessage(bytes).headers;
  const refs = new Set([...messageIdsIn(headerOf(headers, 'in-reply-to')), ...messageIdsIn(headerOf(headers, 'references'))]);
  if (!refs.size) return undefined;
  const parent = [...ctx.state.messages]
    .reverse()
    .find((m) => m.mailbox === mailbox && refs.has(normMessageId(headerOf(m.headers, 'message-id') ?? '')));
  return parent?.threadId;
}

function addMessage(ctx: Ctx, mailbox: string, bytes: Buffer, threadId: string | undefined, labelIds: string[]): GmailMessage {
  const ids = runtimeIds(ctx);
  const id = ids.message();
  const message = storeMessage(ctx.state, {
    id,
    historyId: ids.history(),
    mailbox,
    threadId: threadId ?? id,
    labelIds,
    internalDate: ctx.now(),
    bytes,
  });
  message.indexedAt = ctx.now() + (ctx.state.settings?.searchLagMs ?? 0);
  ctx.changed();
  return message;
}

function removeMessage(ctx: Ctx, id: string) {
  const i = ctx.state.messages.findIndex((m) => m.id === id);
  if (i >= 0) ctx.state.messages.splice(i, 1);
}

const messageRef = (m: GmailMessage) => ({ id: m.id, threadId: m.threadId, labelIds: m.labelIds });

function sendMessage(ctx: Ctx, mailbox: string, input: MessageInput) {
  const bytes = completeHeaders(ctx, decodeRaw(input, 'raw'), mailbox, true);
  requireRecipients(bytes);
  const threadId = resolveThread(ctx, mailbox, input.threadId, bytes);
  return messageRef(addMessage(ctx, mailbox, bytes, threadId, ['SENT']));
}

function createDraft(ctx: Ctx, mailbox: string, input: MessageInput | undefined) {
  if (!input || typeof input !== 'object') throw new RequestProblem(400, 'Invalid draft: message is required', { location: 'message' });
  const bytes = completeHeaders(ctx, decodeRaw(input, 'message.raw'), mailbox, false);
  const threadId = resolveThread(ctx, mailbox, input.threadId, bytes);
  const message = addMessage(ctx, mailbox, bytes, threadId, ['DRAFT']);
  const draft: GmailDraft = { id: draftId(ctx.nextId('draft')), mailbox, messageId: message.id };
  ctx.state.drafts.push(draft);
  ctx.changed();
  return { id: draft.id, message: messageRef(message) };
}

function updateDraft(ctx: Ctx, mailbox: string, id: string, input: MessageInput | undefined) {
  const draft = findDraft(ctx, mailbox, id);
  if (!input || typeof input !== 'object') throw new RequestProblem(400, 'Invalid draft: message is required', { location: 'message' });
  const bytes = completeHeaders(ctx, decodeRaw(input, 'message.raw'), mailbox, false);
  const previous = findMessage(ctx, mailbox, draft.messageId);
  const threadId = resolveThread(ctx, mailbox, input.threadId, bytes) ?? previous.threadId;
  // Gmail gives an updated draft a new message id; the draft id stays.
  removeMessage(ctx, previous.id);
  const message = addMessage(ctx, mailbox, bytes, threadId, previous.labelIds.includes('DRAFT') ? previous.labelIds : ['DRAFT']);
  draft.messageId = message.id;
  ctx.changed();
  return { id: draft.id, message: messageRef(message) };
}

function sendDraft(ctx: Ctx, mailbox: string, body: { id?: unknown; message?: MessageInput } | undefined) {
  if (!body?.id || typeof body.id !== 'string') throw new RequestProblem(400, 'Invalid draft: id is required', { location: 'id' });
  const draft = findDraft(ctx, mailbox, body.id);
  if (body.message?.raw || body.message?.bytes) updateDraft(ctx, mailbox, draft.id, body.message);
  const message = findMessage(ctx, mailbox, draft.messageId);
  const bytes = completeHeaders(ctx, Buffer.from(message.raw, 'base64url'), mailbox, true);
  requireRecipients(bytes);
  // The draft's message becomes the sent message, in the same thread; the draft is gone.
  Object.assign(message, {
    raw: base64url(bytes),
    ...summarise(parseMessage(bytes)),
    labelIds: ['SENT', ...message.labelIds.filter((l) => l !== 'DRAFT' && l !== 'SENT')],
    internalDate: ctx.now(),
    historyId: runtimeIds(ctx).history(),
    indexedAt: ctx.now() + (ctx.state.settings?.searchLagMs ?? 0),
  });
  ctx.state.drafts.splice(ctx.state.drafts.indexOf(draft), 1);
  ctx.changed();
  return messageRef(message);
}

/** Reads an /upload/ request: `uploadType=media` (message/rfc822 body) or multipart/related. */
async function readUpload(req: Request): Promise<{ metadata: Record<string, any>; bytes: Buffer }> {
  const contentType = req.get('content-type') ?? '';
  if (typeof req.body === 'string') return { metadata: {}, bytes: Buffer.from(req.body, 'utf8') };
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(Buffer.from(chunk as Buffer));
  const body = Buffer.concat(chunks);
  const { type, params } = parseParams(contentType);
  if (!type.startsWith('multipart/')) return { metadata: {}, bytes: body };
  if (!params.boundary) throw new RequestProblem(400, 'Invalid multipart request: no boundary');
  const [meta, media] = splitMultipart(body.toString('latin1'), params.boundary).map(splitHeadBody);
  if (!meta || !media) throw new RequestProblem(400, 'Invalid multipart request: expected metadata and media parts');
  let metadata: Record<string, any>;
  try {
    metadata = meta.body.trim() ? JSON.parse(Buffer.from(meta.body, 'latin1').toString('utf8')) : {};
  } catch {
    throw new RequestProblem(400, 'Invalid multipart request: metadata is not JSON');
  }
  return { metadata, bytes: Buffer.from(media.body, 'latin1') };
}

function gmailRoutes(router: Router, ctx: Ctx) {
  const G = '/gmail/v1/users/:userId';
  const U = '/upload/gmail/v1/users/:userId';
  const on = (fn: (req: Request, res: Response, mailbox: string) => void | Promise<void>) =>
    handle(ctx, (req, res) => fn(req, res, mailboxOf(ctx, req)));

  router.get(`${G}/threads`, on((req, res, mailbox) => {
    const matched = selectMessages(ctx, mailbox, req.query);
    const threadIds = [...new Set(matched.map((m) => m.threadId))];
    const { page, nextPageToken } = paginate(threadIds, req.query);
    const threads = page.map((id) => {
      const messages = newestFirst(ctx.state.messages.filter((m) => m.mailbox === mailbox && m.threadId === id));
      const historyId = String(Math.max(...messages.map((m) => Number(m.historyId))));
      return { id, snippet: snippetOf(messages[0]!.text), historyId };
    });
    res.json({ ...(threads.length ? { threads } : {}), ...(nextPageToken ? { nextPageToken } : {}), resultSizeEstimate: threadIds.length });
  }));

  router.get(`${G}/threads/:id`, on((req, res, mailbox) => {
    const messages = newestFirst(ctx.state.messages.filter((m) => m.mailbox === mailbox && m.threadId === req.params.id)).reverse();
    if (!messages.length) throw new RequestProblem(404, NOT_FOUND);
    const historyId = String(Math.max(...messages.map((m) => Number(m.historyId))));
    res.json({ id: req.params.id, historyId, messages: messages.map((m) => formatMessage(m, req.query, false)) });
  }));

  router.get(`${G}/messages`, on((req, res, mailbox) => {
    const matched = selectMessages(ctx, mailbox, req.query);
    const { page, nextPageToken } = paginate(matched, req.query);
    const messages = page.map((m) => ({ id: m.id, threadId: m.threadId }));
    res.json({ ...(messages.length ? { messages } : {}), ...(nextPageToken ? { nextPageToken } : {}), resultSizeEstimate: matched.length });
  }));

  router.post(`${G}/messages/send`, on((req, res, mailbox) => {
    res.json(sendMessage(ctx, mailbox, req.body ?? {}));
  }));
  router.post(`${U}/messages/send`, on(async (req, res, mailbox) => {
    const { metadata, bytes } = await readUpload(req);
    res.json(sendMessage(ctx, mailbox, { bytes, threadId: metadata.threadId }));
  }));

  router.get(`${G}/messages/:id`, on((req, res, mailbox) => {
    res.json(formatMessage(findMessage(ctx, mailbox, String(req.params.id)), req.query));
  }));

  router.get(`${G}/drafts`, on((req, res, mailbox) => {
    const pool = ctx.state.drafts.filter((d) => d.mailbox === mailbox).map((d) => findMessage(ctx, mailbox, d.messageId));
    const matched = selectMessages(ctx, mailbox, req.query, pool);
    const { page, nextPageToken } = paginate(matched, req.query);
    const drafts = page.map((m) => ({ id: ctx.state.drafts.find((d) => d.messageId === m.id)!.id, message: { id: m.id, threadId: m.threadId } }));
    res.json({ ...(drafts.length ? { drafts } : {}), ...(nextPageToken ? { nextPageToken } : {}), resultSizeEstimate: matched.length });
  }));

  router.post(`${G}/drafts`, on((req, res, mailbox) => {
    res.json(createDraft(ctx, mailbox, req.body?.message));
  }));
  router.post(`${U}/drafts`, on(async (req, res, mailbox) => {
    const { metadata, bytes } = await readUpload(req);
    res.json(createDraft(ctx, mailbox, { bytes, threadId: metadata.message?.threadId }));
  }));

  router.post(`${G}/drafts/send`, on((req, res, mailbox) => {
    res.json(sendDraft(ctx, mailbox, req.body));
  }));

  router.get(`${G}/drafts/:id`, on((req, res, mailbox) => {
    const draft = findDraft(ctx, mailbox, req.params.id);
    res.json({ id: draft.id, message: formatMessage(findMessage(ctx, mailbox, draft.messageId), req.query) });
  }));

  router.put(`${G}/drafts/:id`, on((req, res, mailbox) => {
    res.json(updateDraft(ctx, mailbox, String(req.params.id), req.body?.message));
  }));
  router.put(`${U}/drafts/:id`, on(async (req, res, mailbox) => {
    findDraft(ctx, mailbox, req.params.id);
    const { metadata, bytes } = await readUpload(req);
    res.json(updateDraft(ctx, mailbox, String(req.params.id), { bytes, threadId: metadata.message?.threadId }));
  }));

  router.delete(`${G}/drafts/:id`, on((req, res, mailbox) => {
    const draft = findDraft(ctx, mailbox, req.params.id);
    removeMessage(ctx, draft.messageId);
    ctx.state.drafts.splice(ctx.state.drafts.indexOf(draft), 1);
    ctx.changed();
    // send() rather than end(), so apply_then_fail can still swap the answer.
    res.status(204).send();
  }));
}

// ---- time zones ---------------------------------------------------------------

const zoneFormats = new Map<string, Intl.DateTimeFormat>();

function zoneFormat(tz: string): Intl.DateTimeFormat {
  let f = zoneFormats.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: tz,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    zoneFormats.set(tz, f);
  }
  return f;
}

function validZone(tz: string): boolean {
  try {
    zoneFormat(tz);
    return true;
  } catch {
    return false;
  }
}

interface WallTime {
  y: number;
  mo: number;
  d: number;
  h: number;
  mi: number;
  s: number;
}

function wallTime(ms: number, tz: string): WallTime {
  const parts = Object.fromEntries(zoneFormat(tz).formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
  return { y: +parts.year!, mo: +parts.month!, d: +parts.day!, h: +parts.hour!, mi: +parts.minute!, s: +parts.second! };
}

function zoneOffsetMs(ms: number, tz: string): number {
  const w = wallTime(ms, tz);
  return Date.UTC(w.y, w.mo - 1, w.d, w.h, w.mi, w.s) - Math.floor(ms / 1000) * 1000;
}

/** The instant a wall-clock time occurs in a zone (DST-aware; a time inside a spring-forward gap lands an hour early). */
function zonedToUtc(y: number, mo: number, d: number, h: number, mi: number, tz: string): number {
  const guess = Date.UTC(y, mo - 1, d, h, mi);
  const first = guess - zoneOffsetMs(guess, tz);
  const second = guess - zoneOffsetMs(first, tz);
  return second;
}

function formatInZone(ms: number, tz: string | undefined): string {
  if (!tz || tz === 'UTC' || tz === 'Etc/UTC') return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
  const w = wallTime(ms, tz);
  const offMin = Math.round(zoneOffsetMs(ms, tz) / 60_000);
  const sign = offMin < 0 ? '-' : '+';
  const off = `${sign}${pad2(Math.floor(Math.abs(offMin) / 60))}:${pad2(Math.abs(offMin) % 60)}`;
  return `${w.y}-${pad2(w.mo)}-${pad2(w.d)}T${pad2(w.h)}:${pad2(w.mi)}:${pad2(w.s)}${off}`;
}

const hhmm = (v: string) => v.split(':').map(Number) as [number, number];
const DAY_CODES = ['SU', 'MO', 'TU', 'WE', 'TH', 'FR', 'SA'];

/** Calendar days (in `tz`) from the one holding `fromMs` to the one holding `toMs`, plus a day either side. */
function* localDays(fromMs: number, toMs: number, tz: string) {
  const a = wallTime(fromMs, tz);
  const b = wallTime(toMs, tz);
  const last = Date.UTC(b.y, b.mo - 1, b.d + 1);
  for (let k = -1; ; k++) {
    const day = new Date(Date.UTC(a.y, a.mo - 1, a.d + k));
    if (day.getTime() > last) return;
    yield { y: day.getUTCFullYear(), mo: day.getUTCMonth() + 1, d: day.getUTCDate(), code: DAY_CODES[day.getUTCDay()]! };
  }
}

function businessDay(now: number, offset: number, tz: string) {
  let seen = 0;
  for (const day of localDays(now, now + (offset + 7) * 86_400_000, tz)) {
    const today = wallTime(now, tz);
    if (Date.UTC(day.y, day.mo - 1, day.d) <= Date.UTC(today.y, today.mo - 1, today.d)) continue;
    if (day.code === 'SA' || day.code === 'SU') continue;
    if (++seen === offset) return day;
  }
  throw new Error(`no business day ${offset} ahead`);
}

// ---- Calendar -------------------------------------------------------------------

type Interval = [number, number];

function findCalendar(ctx: Ctx, id: string): SandboxCalendar | undefined {
  const wanted = id === 'primary' ? ctx.state.user : id.toLowerCase();
  return ctx.state.calendars.find((c) => c.id.toLowerCase() === wanted);
}

function busyIntervals(ctx: Ctx, cal: SandboxCalendar, min: number, max: number): Interval[] {
  const out: Interval[] = [];
  const keep = (s: number, e: number) => {
    if (e > min && s < max) out.push([Math.max(s, min), Math.min(e, max)]);
  };
  for (const rule of cal.weekly) {
    const tz = rule.timeZone ?? cal.timeZone;
    const [sh, sm] = hhmm(rule.start);
    const [eh, em] = hhmm(rule.end);
    for (const day of localDays(min, max, tz)) {
      if (!rule.days.includes(day.code)) continue;
      keep(zonedToUtc(day.y, day.mo, day.d, sh, sm, tz), zonedToUtc(day.y, day.mo, day.d, eh, em, tz));
    }
  }
  for (const block of cal.blocks) keep(Date.parse(block.start), Date.parse(block.end));
  for (const ev of ctx.state.events) {
    if (ev.calendarId !== cal.id || ev.resource.status === 'cancelled' || ev.resource.transparency === 'transparent') continue;
    keep(ev.startMs, ev.endMs);
  }
  return mergeIntervals(out);
}

function mergeIntervals(list: Interval[]): Interval[] {
  const sorted = [...list].sort((a, b) => a[0] - b[0]);
  const merged: Interval[] = [];
  for (const [s, e] of sorted) {
    const last = merged.at(-1);
    if (last && s <= last[1]) last[1] = Math.max(last[1], e);
    else merged.push([s, e]);
  }
  return merged;
}

function parseInstant(value: unknown, field: string): number {
  const ms = typeof value === 'string' ? Date.parse(value) : NaN;
  if (!Number.isFinite(ms)) {
    throw new RequestProblem(400, value === undefined ? `Missing ${field}.` : `Invalid ${field}.`, { reason: value === undefined ? 'required' : 'invalid', location: field });
  }
  return ms;
}

const MAX_FREEBUSY_SPAN_MS = 400 * 86_400_000;

function freeBusy(ctx: Ctx, body: Record<string, any>) {
  const min = parseInstant(body.timeMin, 'timeMin');
  const max = parseInstant(body.timeMax, 'timeMax');
  if (max <= min) throw new RequestProblem(400, 'The specified time range is empty.', { reason: 'timeRangeEmpty', location: 'timeMax' });
  if (max - min > MAX_FREEBUSY_SPAN_MS) throw new RequestProblem(400, 'The requested time range is too long.', { reason: 'timeRangeTooLong' });
  const tz = typeof body.timeZone === 'string' && body.timeZone ? body.timeZone : undefined;
  if (tz && !validZone(tz)) throw new RequestProblem(400, `Invalid time zone definition: ${tz}`, { reason: 'invalid', location: 'timeZone' });
  const calendars: Record<string, unknown> = {};
  for (const item of Array.isArray(body.items) ? body.items : []) {
    const id = String(item?.id ?? '');
    const cal = findCalendar(ctx, id);
    calendars[id] = cal
      ? { busy: busyIntervals(ctx, cal, min, max).map(([s, e]) => ({ start: formatInZone(s, tz), end: formatInZone(e, tz) })) }
      : { errors: [{ domain: 'global', reason: 'notFound' }], busy: [] };
  }
  return { kind: 'calendar#freeBusy', timeMin: new Date(min).toISOString(), timeMax: new Date(max).toISOString(), calendars };
}

/** An event's start/end: `{date}` (all day) or `{dateTime, timeZone?}`. */
function eventTime(value: any, field: 'start' | 'end', calTz: string): { ms: number; echo: Record<string, string> } {
  const label = field === 'start' ? 'start time' : 'end time';
  if (!value || typeof value !== 'object' || (!value.date && !value.dateTime)) {
    throw new RequestProblem(400, `Missing ${label}.`, { reason: 'required', location: field });
  }
  const tz: string | undefined = value.timeZone;
  if (tz !== undefined && (typeof tz !== 'string' || !validZone(tz))) {
    throw new RequestProblem(400, `Invalid time zone definition for ${label}.`, { reason: 'invalid', location: `${field}.timeZone` });
  }
  if (value.date) {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(String(value.date));
    if (!m) throw new RequestProblem(400, `Invalid ${label}.`, { reason: 'invalid', location: `${field}.date` });
    return { ms: zonedToUtc(+m[1]!, +m[2]!, +m[3]!, 0, 0, tz ?? calTz), echo: { date: value.date } };
  }
  const text = String(value.dateTime);
  const hasOffset = /(Z|[+-]\d{2}:?\d{2})$/i.test(text);
  if (!hasOffset && !tz) throw new RequestProblem(400, `Missing time zone definition for ${label}.`, { reason: 'invalid', location: field });
  let ms = Date.parse(text);
  if (!hasOffset) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(text);
    ms = m ? zonedToUtc(+m[1]!, +m[2]!, +m[3]!, +m[4]!, +m[5]!, tz!) + Number(m[6] ?? 0) * 1000 : NaN;
  }
  if (!Number.isFinite(ms)) throw new RequestProblem(400, `Invalid ${label}.`, { reason: 'invalid', location: `${field}.dateTime` });
  return { ms, echo: { dateTime: formatInZone(ms, tz ?? calTz), ...(tz ? { timeZone: tz } : {}) } };
}

const EVENT_FIELDS = ['summary', 'description', 'location', 'transparency', 'visibility', 'extendedProperties', 'colorId', 'conferenceData'] as const;

function insertEvent(ctx: Ctx, cal: SandboxCalendar, body: Record<string, any>): CalendarEvent['resource'] {
  const start = eventTime(body.start, 'start', cal.timeZone);
  const end = eventTime(body.end, 'end', cal.timeZone);
  if (end.ms < start.ms) throw new RequestProblem(400, 'The specified time range is empty.', { reason: 'timeRangeEmpty', location: 'end.dateTime' });
  let id: string;
  if (body.id !== undefined) {
    id = String(body.id);
    if (!/^[a-v0-9]{5,1024}$/.test(id)) throw new RequestProblem(400, 'Invalid resource id value.', { reason: 'invalid', location: 'id' });
    if (ctx.state.events.some((e) => e.calendarId === cal.id && e.resource.id === id)) {
      throw new RequestProblem(409, 'The requested identifier already exists.', { reason: 'duplicate' });
    }
  } else {
    id = eventId(ctx.nextId('event'));
  }
  const attendees = Array.isArray(body.attendees) ? body.attendees : undefined;
  if (attendees?.some((a: any) => !a?.email)) throw new RequestProblem(400, 'Missing attendee email.', { reason: 'required', location: 'attendees' });
  const stamp = new Date(ctx.now()).toISOString();
  const resource: CalendarEvent['resource'] = {
    kind: 'calendar#event',
    etag: `"${3_400_000_000_000_000 + ctx.nextId('etag')}"`,
    id,
    status: 'confirmed',
    htmlLink: `https://www.google.com/calendar/event?eid=${Buffer.from(`${id} ${cal.id}`).toString('base64url')}`,
    created: stamp,
    updated: stamp,
    ...Object.fromEntries(EVENT_FIELDS.filter((f) => body[f] !== undefined).map((f) => [f, body[f]])),
    creator: { email: ctx.state.user, self: ctx.state.user === cal.id || undefined },
    organizer: { email: cal.id, displayName: cal.summary, self: true },
    start: start.echo,
    end: end.echo,
    iCalUID: `${id}@google.com`,
    sequence: 0,
    ...(attendees
      ? {
          attendees: attendees.map((a: any) => ({
            email: String(a.email).toLowerCase(),
            ...(a.displayName ? { displayName: a.displayName } : {}),
            ...(a.optional ? { optional: true } : {}),
            ...(String(a.email).toLowerCase() === cal.id ? { organizer: true, self: true } : {}),
            responseStatus: a.responseStatus ?? (String(a.email).toLowerCase() === cal.id ? 'accepted' : 'needsAction'),
          })),
        }
      : {}),
    reminders: body.reminders ?? { useDefault: true },
    eventType: 'default',
  };
  ctx.state.events.push({ calendarId: cal.id, startMs: start.ms, endMs: end.ms, resource });
  ctx.changed();
  return resource;
}

function calendarRoutes(router: Router, ctx: Ctx) {
  const C = '/calendar/v3/calendars/:calendarId';
  const calendarOf = (req: Request) => {
    const cal = findCalendar(ctx, String(req.params.calendarId));
    if (!cal) throw new RequestProblem(404, 'Not Found');
    return cal;
  };
  const eventOf = (req: Request) => {
    const cal = calendarOf(req);
    const ev = ctx.state.events.find((e) => e.calendarId === cal.id && e.resource.id === req.params.eventId);
    if (!ev) throw new RequestProblem(404, 'Not Found');
    return ev;
  };

  router.post('/calendar/v3/freeBusy', handle(ctx, (req, res) => {
    res.json(freeBusy(ctx, req.body ?? {}));
  }));
  router.post(`${C}/events`, handle(ctx, (req, res) => {
    res.json(insertEvent(ctx, calendarOf(req), req.body ?? {}));
  }));
  router.get(`${C}/events/:eventId`, handle(ctx, (req, res) => {
    res.json(eventOf(req).resource);
  }));
  router.delete(`${C}/events/:eventId`, handle(ctx, (req, res) => {
    const ev = eventOf(req);
    if (ev.resource.status === 'cancelled') throw new RequestProblem(410, 'Resource has been deleted', { reason: 'deleted' });
    ev.resource.status = 'cancelled';
    ev.resource.updated = new Date(ctx.now()).toISOString();
    ctx.changed();
    res.status(204).send();
  }));
}

// ---- OAuth ----------------------------------------------------------------------

const GRANTED_SCOPES = [
  'https://www.googleapis.com/auth/gmail.compose',
  'https://www.googleapis.com/auth/gmail.readonly',
  'https://www.googleapis.com/auth/calendar',
].join(' ');

function tokenRoute(router: Router, ctx: Ctx) {
  router.post('/token', (req, res) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const oauthError = (status: number, error: string, description: string) =>
      void res.status(status).set('Cache-Control', 'no-store').json({ error, error_description: description });
    if (body.grant_type !== 'refresh_token') return oauthError(400, 'unsupported_grant_type', `Invalid grant_type: ${String(body.grant_type ?? '')}`);
    if (!body.client_id) return oauthError(400, 'invalid_request', 'Could not determine client ID from request.');
    if (!body.client_secret) return oauthError(401, 'invalid_client', 'Unauthorized');
    if (!body.refresh_token) return oauthError(400, 'invalid_request', 'Missing required parameter: refresh_token');
    if (ctx.state.oauth.revokedRefreshTokens.includes(String(body.refresh_token))) {
      return oauthError(400, 'invalid_grant', 'Token has been expired or revoked.');
    }
    const n = ++ctx.state.oauth.grants;
    ctx.state.oauth.lastGrantAt = new Date(ctx.now()).toISOString();
    ctx.changed();
    res.set('Cache-Control', 'no-cache, no-store, max-age=0, must-revalidate').json({
      access_token: `ya29.sandbox-${createHash('sha256').update(`grant-${n}-${ctx.now()}`).digest('base64url').slice(0, 40)}`,
      expires_in: 3599,
      scope: GRANTED_SCOPES,
      token_type: 'Bearer',
    });
  });
}

function requireBearer(ctx: Ctx) {
  return (req: Request, res: Response, next: NextFunction) => {
    const header = req.get('authorization');
    if (!header) {
      return fail(ctx, res, 401, 'Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.', {
        reason: 'required',
        location: 'Authorization',
        locationType: 'header',
      });
    }
    if (!/^Bearer\s+\S+\s*$/i.test(header)) {
      return fail(ctx, res, 401, 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.', {
        reason: 'authError',
        location: 'Authorization',
        locationType: 'header',
      });
    }
    next();
  };
}

// ---- control ----------------------------------------------------------------------

function decoded(m: GmailMessage) {
  const h = (name: string) => headerOf(m.headers, name) ?? '';
  return {
    id: m.id,
    threadId: m.threadId,
    mailbox: m.mailbox,
    from: h('from'),
    to: h('to'),
    cc: h('cc'),
    subject: h('subject'),
    body: m.text,
    rfc822MessageId: h('message-id'),
    headers: Object.fromEntries(m.headers.map((x) => [x.name.toLowerCase(), x.value])),
    labelIds: m.labelIds,
    date: new Date(m.internalDate).toISOString(),
  };
}

function controlRoutes(router: Router, ctx: Ctx) {
  router.get('/drafts', (_req, res) => {
    res.json(
      ctx.state.drafts.map((d) => {
        const m = ctx.state.messages.find((x) => x.id === d.messageId)!;
        return { ...decoded(m), id: d.id, messageId: m.id };
      }),
    );
  });
  router.get('/sent', (_req, res) => {
    res.json(ctx.state.messages.filter((m) => m.labelIds.includes('SENT')).map(decoded));
  });
  router.get('/threads', (_req, res) => {
    const byThread = new Map<string, GmailMessage[]>();
    for (const m of ctx.state.messages) byThread.set(`${m.mailbox} ${m.threadId}`, [...(byThread.get(`${m.mailbox} ${m.threadId}`) ?? []), m]);
    res.json(
      [...byThread.values()].map((list) => {
        const messages = newestFirst(list).reverse();
        return { id: messages[0]!.threadId, mailbox: messages[0]!.mailbox, subject: headerOf(messages[0]!.headers, 'subject') ?? '', messages: messages.map(decoded) };
      }),
    );
  });
  router.get('/events', (_req, res) => {
    res.json(ctx.state.events.map((e) => ({ calendarId: e.calendarId, ...e.resource })));
  });
  router.post('/threads', (req, res) => {
    const seeds = req.body?.messages as SeedMessage[] | undefined;
    if (!Array.isArray(seeds) || !seeds.length || seeds.some((s) => !s?.from || !s?.to || typeof s.subject !== 'string' || typeof s.body !== 'string')) {
      return void res.status(400).json({ error: 'messages: a non-empty list of {from, to, subject, body} is required' });
    }
    const mailbox = String(req.body.mailbox ?? ctx.state.user).toLowerCase();
    const made = seedThread(ctx.state, mailbox, seeds, runtimeIds(ctx), ctx.now());
    ctx.changed();
    res.status(201).json({ threadId: made.threadId, messages: made.messages.map((m) => ({ id: m.id, messageId: headerOf(m.headers, 'message-id') })) });
  });
  router.post('/busy', (req, res) => {
    const cal = findCalendar(ctx, String(req.body?.calendarId ?? ctx.state.user));
    if (!cal) return void res.status(404).json({ error: `no calendar ${String(req.body?.calendarId)}` });
    const blocks = (Array.isArray(req.body?.blocks) ? req.body.blocks : [req.body]) as BusyBlock[];
    if (blocks.some((b) => !Number.isFinite(Date.parse(b?.start)) || !(Date.parse(b?.end) > Date.parse(b?.start)))) {
      return void res.status(400).json({ error: 'blocks: each needs ISO start < end' });
    }
    cal.blocks.push(...blocks.map((b) => ({ start: new Date(b.start).toISOString(), end: new Date(b.end).toISOString(), ...(b.summary ? { summary: b.summary } : {}) })));
    ctx.changed();
    res.status(201).json({ calendarId: cal.id, blocks: cal.blocks });
  });
  router.post('/settings', (req, res) => {
    const lag = Number(req.body?.searchLagMs ?? 0);
    if (!Number.isInteger(lag) || lag < 0) return void res.status(400).json({ error: 'searchLagMs must be a non-negative integer' });
    ctx.state.settings = { searchLagMs: lag };
    ctx.changed();
    res.json(ctx.state.settings);
  });
  router.post('/revoke', (req, res) => {
    const token = req.body?.refreshToken;
    if (typeof token !== 'string' || !token) return void res.status(400).json({ error: 'refreshToken is required' });
    ctx.state.oauth.revokedRefreshTokens.push(token);
    ctx.changed();
    res.json({ ok: true });
  });
}

// ---- module ------------------------------------------------------------------------

function initialState(): GoogleState {
  const seed = fixture as GoogleFixture;
  const now = Date.now();
  const state: GoogleState = {
    user: seed.user.toLowerCase(),
    oauth: { grants: 0, revokedRefreshTokens: [...seed.revokedRefreshTokens] },
    messages: [],
    drafts: [],
    calendars: seed.calendars.map((c) => ({
      id: c.id.toLowerCase(),
      summary: c.summary,
      timeZone: c.timeZone,
      weekly: c.weekly.map((w) => ({ ...w, days: [...w.days] })),
      blocks: c.blocks.map((b) => {
        // Relative blocks land on the Nth business day from now, so they stay in the upcoming window.
        const day = businessDay(now, b.businessDayOffset, c.timeZone);
        const at = (t: string) => new Date(zonedToUtc(day.y, day.mo, day.d, ...hhmm(t), c.timeZone)).toISOString();
        return { start: at(b.start), end: at(b.end), ...(b.summary ? { summary: b.summary } : {}) };
      }),
    })),
    events: [],
  };
  const ids = fixtureIds();
  for (const thread of seed.threads) seedThread(state, state.user, thread.messages, ids, now);
  return state;
}

export const google: ProviderModule<GoogleState> = {
  name: 'google',
  prefixes: ['/token', '/gmail', '/upload/gmail', '/calendar'],
  initialState,
  errorFor: googleError,
  routes(router, ctx) {
    tokenRoute(router, ctx);
    router.use(['/gmail', '/upload/gmail', '/calendar'], requireBearer(ctx));
    gmailRoutes(router, ctx);
    calendarRoutes(router, ctx);
    // Unknown paths under Google's prefixes answer in Google's shape, not the sandbox's.
    router.use(['/gmail', '/upload/gmail', '/calendar'], (_req, res) => fail(ctx, res, 404, 'Not Found'));
  },
  control: controlRoutes,
};
