import dns from 'node:dns';
import net from 'node:net';
import ms from 'ms';
import { Agent, buildConnector, fetch, type Response } from 'undici';
import type { OutboundConfig } from '../../lib/config/outbound.js';
import { addressRefusal, isAllowedHost } from '../../lib/domain/outbound.js';

/**
 * The one way our code fetches a URL that configuration or harvested data
 * names (a feed, its redirects, its next pages). Data decides those URLs, so
 * the fetch must not become a way into the network the worker sits on:
 *
 * - Addresses: the rule in lib/domain/outbound.ts is applied to the address
 *   the socket connects to. A host name is resolved inside the connection's
 *   own lookup (undici's connector, Node's `lookup` hook), and the addresses
 *   that lookup hands to the socket are the ones judged, so a name that
 *   answers differently between a check and the connect (DNS rebinding)
 *   gains nothing. An IP literal is judged before connecting. Hosts named in
 *   OUTBOUND_ALLOW_HOSTS skip the rule (an internal feed, the dev sandbox).
 * - Redirects are followed here, one hop at a time (each hop connects
 *   through the same check), up to OUTBOUND_MAX_REDIRECTS; only http and https.
 * - Size: the body is streamed and counted after decompression; past
 *   OUTBOUND_MAX_BYTES the connection is dropped, so a huge answer costs at
 *   most that much memory. A declared Content-Length over it is refused unread.
 * - Time: connect, idle (headers, and between body chunks) and total timeouts.
 *
 * Refusals are OutboundRefusedError with a reason; their messages name the
 * origin and the rule, never the body or the URL's path and query.
 */

export type RefusalReason = 'scheme' | 'address' | 'redirects' | 'too_large' | 'timeout';

export class OutboundRefusedError extends Error {
  override readonly name = 'OutboundRefusedError';
  constructor(message: string, readonly reason: RefusalReason) {
    super(message);
  }
}

/** Resolves a host name to every address it has (the test suites pass their own). */
export type Resolver = (hostname: string) => Promise<dns.LookupAddress[]>;

export const systemResolver: Resolver = (hostname) => dns.promises.lookup(hostname, { all: true, verbatim: true });

export interface SafeFetchOptions {
  headers?: Record<string, string>;
}

export interface SafeResponse {
  status: number;
  headers: Response['headers'];
  /** The URL that answered (after redirects). */
  url: string;
  redirects: number;
  /** The body of a 2xx answer as UTF-8 text; empty for any other status. */
  text: string;
}

export interface SafeFetcher {
  /** GET `url` under the outbound policy; throws OutboundRefusedError, or a plain Error when the host is unreachable. */
  get(url: string, options?: SafeFetchOptions): Promise<SafeResponse>;
  close(): Promise<void>;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export type OutboundPolicy = Omit<OutboundConfig, 'maxItemsPerPage'>;

export function createSafeFetcher(policy: OutboundPolicy, deps: { resolve?: Resolver } = {}): SafeFetcher {
  const resolve = deps.resolve ?? systemResolver;
  /** The socket's own DNS lookup: what it returns is what the socket connects to, so checking here checks the connection. */
  const lookupWith = (guard: boolean): net.LookupFunction => (hostname, options, callback) => {
    resolve(hostname).then(
      (addresses) => {
        for (const a of guard ? addresses : []) {
          const why = addressRefusal(a.address);
          if (why) return callback(new OutboundRefusedError(`${hostname} resolves to ${why}, ${NOT_ALLOWED}`, 'address'), '');
        }
        const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : options.family;
        const usable = family ? addresses.filter((a) => a.family === family) : addresses;
        if (usable.length === 0) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), '');
        if (options.all) return callback(null, usable);
        return callback(null, usable[0]!.address, usable[0]!.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, ''),
    );
  };
  const plain = buildConnector({ timeout: policy.connectTimeoutMs, lookup: lookupWith(false) });
  const guarded = buildConnector({ timeout: policy.connectTimeoutMs, lookup: lookupWith(true) });
  const connect: buildConnector.connector = (opts, callback) => {
    const port = Number(opts.port) || (opts.protocol === 'https:' ? 443 : 80);
    if (isAllowedHost(policy.allowHosts, opts.hostname, port)) return plain(opts, callback);
    if (net.isIP(opts.hostname)) {
      const why = addressRefusal(opts.hostname);
      if (why) return callback(new OutboundRefusedError(`${why}, ${NOT_ALLOWED}`, 'address'), null);
      return plain(opts, callback);
    }
    return guarded(opts, callback);
  };
  const agent = new Agent({ connect, headersTimeout: policy.idleTimeoutMs, bodyTimeout: policy.idleTimeoutMs });

  async function get(url: string, options: SafeFetchOptions = {}): Promise<SafeResponse> {
    const signal = AbortSignal.timeout(policy.totalTimeoutMs);
    let target = parseTarget(url);
    for (let redirects = 0; ; redirects++) {
      let res: Response;
      try {
        res = await fetch(target, { headers: options.headers, redirect: 'manual', dispatcher: agent, signal });
      } catch (err) {
        throw explain(err, target, redirects, signal);
      }
      const location = res.headers.get('location');
      if (REDIRECTS.has(res.status) && location) {
        await discard(res);
        if (redirects + 1 > policy.maxRedirects) {
          throw new OutboundRefusedError(`${where(target, redirects)}: redirects again, more than OUTBOUND_MAX_REDIRECTS (${policy.maxRedirects})`, 'redirects');
        }
        target = parseTarget(location, target, redirects);
        continue;
      }
      if (res.status < 200 || res.status > 299) {
        await discard(res);
        return { status: res.status, headers: res.headers, url: target.toString(), redirects, text: '' };
      }
      let text: string;
      try {
        text = await readCapped(res, target);
      } catch (err) {
        throw explain(err, target, redirects, signal);
      }
      return { status: res.status, headers: res.headers, url: target.toString(), redirects, text };
    }
  }

  async function readCapped(res: Response, target: URL): Promise<string> {
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (Number.isFinite(declared) && declared > policy.maxBytes) {
      await discard(res);
      throw new OutboundRefusedError(`declared ${declared} bytes, over OUTBOUND_MAX_BYTES (${policy.maxBytes})`, 'too_large');
    }
    if (!res.body) return '';
    const reader = res.body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > policy.maxBytes) {
        // Cancelling drops the connection: the rest of the answer is never read.
        void reader.cancel().catch(() => undefined);
        throw new OutboundRefusedError(`sent more than OUTBOUND_MAX_BYTES (${policy.maxBytes} bytes)`, 'too_large');
      }
      chunks.push(value);
    }
    return new TextDecoder('utf-8').decode(Buffer.concat(chunks));
  }

  /** What went wrong, as a refusal (address, size, time) or a plain error a retry may fix (refused connection, reset). */
  function explain(err: unknown, target: URL, redirects: number, signal: AbortSignal): Error {
    const chain = causes(err);
    const refusal = chain.find((e): e is OutboundRefusedError => e instanceof OutboundRefusedError);
    const at = where(target, redirects);
    if (refusal) return new OutboundRefusedError(`${at}: ${refusal.message}`, refusal.reason);
    if (signal.aborted) return new OutboundRefusedError(`${at}: did not finish answering within OUTBOUND_TOTAL_TIMEOUT (${ms(policy.totalTimeoutMs)})`, 'timeout');
    const code = chain.map((e) => (e as { code?: string }).code).find((c) => c === 'UND_ERR_HEADERS_TIMEOUT' || c === 'UND_ERR_BODY_TIMEOUT');
    if (code) return new OutboundRefusedError(`${at}: silent for longer than OUTBOUND_IDLE_TIMEOUT (${ms(policy.idleTimeoutMs)})`, 'timeout');
    const detail = chain.map((e) => e.message).filter((m) => m && m !== 'fetch failed').join(': ') || 'no answer';
    return new Error(`${at}: unreachable: ${detail}`, { cause: err });
  }

  return {
    get,
    close: () => agent.close(),
  };
}

const NOT_ALLOWED = 'which outbound fetches may not reach (OUTBOUND_ALLOW_HOSTS names hosts that may)';

/** The origin a message names (never the path or query, which can carry tokens), and the hop. */
function where(target: URL, redirects: number): string {
  return redirects > 0 ? `${target.origin} (redirect ${redirects})` : target.origin;
}

function parseTarget(url: string, base?: URL, redirects = 0): URL {
  const from = base ? `${where(base, redirects)}: redirect to ` : '';
  let target: URL;
  try {
    target = new URL(url, base);
  } catch {
    throw new OutboundRefusedError(`${from}a malformed URL`, 'scheme');
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    throw new OutboundRefusedError(`${from}scheme ${target.protocol} refused; only http and https are fetched`, 'scheme');
  }
  return target;
}


async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => undefined);
}

function causes(err: unknown): Error[] {
  const out: Error[] = [];
  for (let e = err; e instanceof Error && out.length < 8; e = (e as { cause?: unknown }).cause) out.push(e);
  return out;
}
