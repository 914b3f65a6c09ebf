import { XMLParser } from 'fast-xml-parser';
import { OutboundRefusedError, type SafeFetcher, type SafeResponse } from '../../providers/safe-fetch.js';
import {
  SourceRateLimitedError,
  SourceRefusedError,
  SourceRejectedError,
  type FetchedPage,
  type FetchRequest,
  type SignalInput,
  type SignalSource,
} from './types.js';

/**
 * RSS 2.0, RSS 1.0 (RDF) and Atom feeds as a signal source. The cursor holds
 * the validators of the last complete read (ETag / Last-Modified) so an
 * unchanged feed costs a 304 and nothing else. Paged feeds (RFC 5005,
 * `<link rel="next">`) are followed until a page brings nothing new.
 * Feeds carry no engagement metrics: their signals score on text and recency.
 *
 * Every request (the feed's URL, each redirect, each next page) goes through
 * the safe fetcher: a feed is data, so its links may point anywhere, and a
 * refused address, an oversized or endless answer, or a page with more items
 * than the cap rejects the query (SourceRefusedError) instead of reaching
 * the worker's network or exhausting its memory.
 */

export interface FeedSourceOptions {
  /** The outbound policy's fetcher (activities/providers/safe-fetch.ts). */
  fetcher: SafeFetcher;
  /** Most items one page may hold (OUTBOUND_MAX_ITEMS); counted before the XML is parsed. */
  maxItems?: number;
  userAgent?: string;
  /** Cap on the text kept per item. */
  maxTextChars?: number;
}

interface FeedCursor {
  etag?: string;
  lastModified?: string;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  textNodeName: '#text',
  parseTagValue: false,
  trimValues: true,
  isArray: (name) => ['item', 'entry', 'link', 'category'].includes(name),
});

export function feedSource(options: FeedSourceOptions): SignalSource {
  const maxText = options.maxTextChars ?? 2_000;
  const maxItems = options.maxItems ?? 1_000;
  return {
    kind: 'feed',
    stopOnKnownPage: true,
    async fetchPage(request: FetchRequest): Promise<FetchedPage> {
      const feedUrl = request.query.url;
      if (!feedUrl) throw new SourceRejectedError(`query ${request.query.name} has no feed url`, 400);
      const pageUrl = request.pageToken ?? feedUrl;
      // Validators only apply to the feed's first page: archive pages are read in full.
      const cursor = request.pageToken ? {} : parseCursor(request.cursor);
      const headers: Record<string, string> = {
        accept: 'application/atom+xml, application/rss+xml, application/rdf+xml, application/xml;q=0.9, text/xml;q=0.8',
        'user-agent': options.userAgent ?? 'Prospector signal harvester',
      };
      if (cursor.etag) headers['if-none-match'] = cursor.etag;
      if (cursor.lastModified) headers['if-modified-since'] = cursor.lastModified;

      let res: SafeResponse;
      try {
        res = await options.fetcher.get(pageUrl, { headers });
      } catch (err) {
        if (err instanceof OutboundRefusedError) {
          const which = request.pageToken ? 'next page' : 'feed';
          throw new SourceRefusedError(`query ${request.query.name}: ${which} refused: ${err.message}`, err.reason);
        }
        throw new Error(`query ${request.query.name}: feed unreachable: ${(err as Error).message}`, { cause: err });
      }
      if (res.status === 304) return { signals: [], cursorCandidate: request.cursor ?? undefined };
      if (res.status === 429) throw new SourceRateLimitedError(`feed ${pageUrl} answered 429`, Date.now() + retryAfterMs(res.headers.get('retry-after')));
      if (res.status >= 500) throw new Error(`feed ${pageUrl} answered ${res.status}`);
      if (res.status < 200 || res.status > 299) throw new SourceRejectedError(`feed ${pageUrl} answered ${res.status}`, res.status, Boolean(request.pageToken));

      if (countItems(res.text, maxItems + 1) > maxItems) {
        const which = request.pageToken ? 'next page' : 'feed';
        throw new SourceRefusedError(`query ${request.query.name}: ${which} refused: ${new URL(res.url).origin}: more than OUTBOUND_MAX_ITEMS (${maxItems}) items on one page`, 'too_many_items');
      }
      const parsed = parseFeed(res.text, feedUrl, maxText);
      const validators: FeedCursor = {
        ...(res.headers.get('etag') ? { etag: res.headers.get('etag')! } : {}),
        ...(res.headers.get('last-modified') ? { lastModified: res.headers.get('last-modified')! } : {}),
      };
      return {
        signals: parsed.items,
        nextPageToken: nextPage(parsed.next, res.url),
        cursorCandidate: request.pageToken ? undefined : JSON.stringify(validators),
      };
    },
  };
}

/** Item and entry tags in the raw text (up to `stopAt`), counted before parsing so an oversized page never becomes objects. */
function countItems(xml: string, stopAt: number): number {
  const tag = /<(?:[\w.-]+:)?(?:item|entry)[\s/>]/g;
  let n = 0;
  while (n < stopAt && tag.exec(xml)) n++;
  return n;
}

/** The next page's absolute URL, relative to the URL that answered; a link that is no URL ends the window. */
function nextPage(href: string | undefined, base: string): string | undefined {
  if (!href) return undefined;
  try {
    return new URL(href, base).toString();
  } catch {
    return undefined;
  }
}

function parseCursor(cursor: string | null): FeedCursor {
  if (!cursor) return {};
  try {
    const c = JSON.parse(cursor) as FeedCursor;
    return typeof c === 'object' && c ? c : {};
  } catch {
    return {};
  }
}

function retryAfterMs(value: string | null): number {
  if (!value) return 60_000;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? 60_000 : Math.max(0, at - Date.now());
}

type Node = Record<string, unknown>;

/** Items of any of the three dialects, plus the next-page link of a paged feed. Exported for tests. */
export function parseFeed(xml: string, feedUrl: string, maxText = 2_000): { items: SignalInput[]; next?: string } {
  let doc: Node;
  try {
    doc = parser.parse(xml) as Node;
  } catch (err) {
    throw new SourceRejectedError(`feed ${feedUrl} is not well-formed XML: ${(err as Error).message}`, 422);
  }
  const atom = doc.feed as Node | undefined;
  if (atom) {
    const entries = (atom.entry as Node[] | undefined) ?? [];
    return { items: entries.map((e) => atomEntry(e, feedUrl, maxText)).filter(isSignal), next: linkHref(atom.link, 'next') };
  }
  const rss = (doc.rss as Node | undefined)?.channel as Node | undefined;
  const rdf = doc['rdf:RDF'] as Node | undefined;
  const items = ((rss?.item ?? rdf?.item) as Node[] | undefined) ?? [];
  if (!rss && !rdf) throw new SourceRejectedError(`feed ${feedUrl} is neither RSS nor Atom`, 422);
  const next = rss ? linkHref(rss['atom:link'] ?? rss.link, 'next') : undefined;
  return { items: items.map((i) => rssItem(i, feedUrl, maxText)).filter(isSignal), next };
}

const isSignal = (s: SignalInput | undefined): s is SignalInput => s !== undefined;

function atomEntry(e: Node, feedUrl: string, maxText: number): SignalInput | undefined {
  const link = linkHref(e.link, 'alternate') ?? linkHref(e.link, undefined);
  const id = text(e.id) ?? link;
  if (!id) return undefined;
  const author = (Array.isArray(e.author) ? e.author[0] : e.author) as Node | undefined;
  const title = text(e.title);
  const body = stripHtml(text(e.summary) ?? text(e.content) ?? '');
  return signal({
    feedUrl,
    id,
    link,
    title,
    body,
    date: text(e.published) ?? text(e.updated),
    authorName: text(author?.name),
    authorHandle: text(author?.email) ?? text(author?.uri) ?? text(author?.name),
    maxText,
  });
}

function rssItem(i: Node, feedUrl: string, maxText: number): SignalInput | undefined {
  const link = text(i.link) ?? linkHref(i.link, undefined) ?? (i['@_rdf:about'] as string | undefined);
  const guid = text(i.guid);
  const id = guid ?? link;
  if (!id) return undefined;
  const author = text(i['dc:creator']) ?? text(i.author);
  const email = author?.match(/[\w.+-]+@[\w-]+(\.[\w-]+)+/)?.[0];
  const name = author?.match(/\(([^)]+)\)/)?.[1] ?? author;
  return signal({
    feedUrl,
    id,
    link,
    title: text(i.title),
    body: stripHtml(text(i['content:encoded']) ?? text(i.description) ?? ''),
    date: text(i.pubDate) ?? text(i['dc:date']),
    authorName: name,
    authorHandle: email ?? name,
    maxText,
  });
}

function signal(f: { feedUrl: string; id: string; link?: string; title?: string; body: string; date?: string; authorName?: string; authorHandle?: string; maxText: number }): SignalInput {
  const posted = f.date ? Date.parse(f.date) : NaN;
  const textValue = [f.title, f.body].filter(Boolean).join('\n').slice(0, f.maxText) || f.link || f.id;
  // A guid like "42" is only unique inside its feed; URLs and URNs are global.
  const externalId = /^[a-z][a-z0-9+.-]*:/i.test(f.id) ? f.id : `${f.feedUrl}#${f.id}`;
  return {
    source: 'feed',
    externalId: externalId.slice(0, 1_000),
    url: f.link,
    authorHandle: f.authorHandle?.toLowerCase(),
    authorName: f.authorName,
    text: textValue,
    postedAt: new Date(Number.isNaN(posted) ? Date.now() : posted).toISOString(),
    metrics: { likes: 0, reposts: 0, replies: 0, quotes: 0 },
    raw: { feed: f.feedUrl, id: f.id, title: f.title },
  };
}

function text(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (Array.isArray(value)) return text(value[0]);
  if (typeof value === 'object') return text((value as Node)['#text']);
  const s = String(value).trim();
  return s === '' ? undefined : s;
}

function linkHref(links: unknown, rel: string | undefined): string | undefined {
  const list = (Array.isArray(links) ? links : links === undefined ? [] : [links]) as unknown[];
  for (const l of list) {
    if (typeof l === 'string') {
      if (rel === undefined) return l;
      continue;
    }
    const node = l as Node;
    const r = (node['@_rel'] as string | undefined) ?? 'alternate';
    if ((rel === undefined || r === rel) && typeof node['@_href'] === 'string') return node['@_href'] as string;
  }
  return undefined;
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' };

function stripHtml(html: string): string {
  return html
    .replace(/<(script|style)[\s\S]*?<\/\1>/gi, ' ')
    .replace(/<[^>]+>/g, ' ')
    .replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e: string) => {
      if (e[0] === '#') {
        const code = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
        return Number.isFinite(code) ? String.fromCodePoint(code) : m;
      }
      return ENTITIES[e.toLowerCase()] ?? m;
    })
    .replace(/\s+/g, ' ')
    .replace(/ ([.,;:!?])/g, '$1')
    .trim();
}
