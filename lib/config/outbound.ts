import { z } from 'zod';
import { formatAllowedHost, parseAllowedHost, type AllowedHost } from '../domain/outbound.js';
import { ConfigError, durationSetting, problemsOf, readSettings, type RawSettings, type SettingsSource } from './settings.js';

/**
 * Settings of our own outbound fetches to URLs that configuration or data
 * name (feeds, their redirects and next pages): which otherwise refused hosts
 * are allowed, and the caps that keep one answer from exhausting a worker.
 * Owned here, composed into the one configuration by lib/config/config.ts.
 * The address rule itself is lib/domain/outbound.ts; the fetcher that applies
 * both is activities/providers/safe-fetch.ts.
 */

const UNITS: Record<string, number> = { b: 1, kb: 1024, kib: 1024, mb: 1024 ** 2, mib: 1024 ** 2, gb: 1024 ** 3, gib: 1024 ** 3 };

/** A byte size such as "5mb", "512kb" or "1048576" (k/m/g are powers of 1024, as API_BODY_LIMIT). */
const sizeSetting = (fallback: string, min: number, max: number) =>
  z
    .string()
    .default(fallback)
    .transform((value, ctx) => {
      const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
      const unit = UNITS[(m?.[2] || 'b').toLowerCase()];
      const bytes = m && unit ? Math.floor(Number(m[1]) * unit) : NaN;
      if (!Number.isFinite(bytes) || bytes < min || bytes > max) {
        ctx.addIssue({ code: 'custom', message: `expected a size such as "5mb" or "512kb" between ${min} bytes and ${max / 1024 ** 2} mb, got "${value}"` });
        return z.NEVER;
      }
      return bytes;
    });

const int = (fallback: number, min: number, max: number) =>
  z.coerce.number({ error: 'expected a number' }).int('expected a whole number').min(min).max(max).default(fallback);

const allowList = z
  .string()
  .default('')
  .transform((value, ctx) => {
    const entries: AllowedHost[] = [];
    for (const part of value.split(',').map((p) => p.trim()).filter(Boolean)) {
      const parsed = parseAllowedHost(part);
      if (typeof parsed === 'string') {
        ctx.addIssue({ code: 'custom', message: `expected a comma list of host or host:port (e.g. "feeds.internal.example,127.0.0.1:4010"): ${parsed}` });
        return z.NEVER;
      }
      entries.push(parsed);
    }
    return entries;
  });

export const outboundSettingsSchema = z.object({
  OUTBOUND_ALLOW_HOSTS: allowList,
  OUTBOUND_MAX_BYTES: sizeSetting('5mb', 1024, 512 * 1024 ** 2),
  OUTBOUND_CONNECT_TIMEOUT: durationSetting('10s', { max: 60_000 }),
  OUTBOUND_IDLE_TIMEOUT: durationSetting('15s', { max: 60_000 }),
  // Below the harvest's 90 s fetch-page activity timeout, so the fetch ends first and says why.
  OUTBOUND_TOTAL_TIMEOUT: durationSetting('30s', { max: 80_000 }),
  OUTBOUND_MAX_REDIRECTS: int(5, 0, 20),
  OUTBOUND_MAX_ITEMS: int(1_000, 1, 10_000),
});

export interface OutboundConfig {
  /** Hosts (optionally on one port) reachable even at addresses the rule refuses: an internal feed, the dev sandbox. */
  allowHosts: AllowedHost[];
  /** Most bytes read from one answer (after decompression); more ends the fetch. */
  maxBytes: number;
  connectTimeoutMs: number;
  /** Longest wait for the answer's headers, and between two pieces of its body. */
  idleTimeoutMs: number;
  /** Longest one fetch may take, redirects and body included. */
  totalTimeoutMs: number;
  maxRedirects: number;
  /** Most items one fetched feed page may hold; a page with more is refused before it is parsed. */
  maxItemsPerPage: number;
}

/** The outbound settings from the environment and the config file (callers with a loaded Config use `config.outbound`). */
export function loadOutboundConfig(options: SettingsSource = {}): OutboundConfig {
  return outboundConfigFrom(readSettings(Object.keys(outboundSettingsSchema.shape), options));
}

/** The outbound configuration from raw settings; throws a ConfigError naming every bad one. */
export function outboundConfigFrom(raw: RawSettings): OutboundConfig {
  const parsed = outboundSettingsSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(problemsOf(parsed.error, raw));
  const s = parsed.data;
  if (s.OUTBOUND_IDLE_TIMEOUT > s.OUTBOUND_TOTAL_TIMEOUT) {
    throw new ConfigError([{ setting: 'OUTBOUND_IDLE_TIMEOUT', message: 'must not be longer than OUTBOUND_TOTAL_TIMEOUT' }]);
  }
  return {
    allowHosts: s.OUTBOUND_ALLOW_HOSTS,
    maxBytes: s.OUTBOUND_MAX_BYTES,
    connectTimeoutMs: s.OUTBOUND_CONNECT_TIMEOUT,
    idleTimeoutMs: s.OUTBOUND_IDLE_TIMEOUT,
    totalTimeoutMs: s.OUTBOUND_TOTAL_TIMEOUT,
    maxRedirects: s.OUTBOUND_MAX_REDIRECTS,
    maxItemsPerPage: s.OUTBOUND_MAX_ITEMS,
  };
}

/** The allow-list as OUTBOUND_ALLOW_HOSTS spells it (the dev supervisor adds the sandbox to it). */
export function formatAllowList(entries: readonly AllowedHost[]): string {
  return entries.map(formatAllowedHost).join(',');
}
