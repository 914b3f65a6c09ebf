import ipaddr from 'ipaddr.js';

/**
 * Which network addresses our own outbound fetches (feeds, and any URL that
 * configuration or harvested data names) may reach, and the allow-list that
 * overrides it per host. Pure: the fetcher (activities/providers/safe-fetch.ts)
 * applies it to the address it is about to connect to, and the configuration
 * loader parses the allow-list with it.
 *
 * Only global unicast is reachable. Loopback, private (RFC 1918), link-local
 * (which holds the cloud metadata address 169.254.169.254), CGNAT, multicast,
 * broadcast, unspecified, documentation/reserved ranges and IPv6 unique-local
 * are refused; ipaddr.js names the ranges. An IPv6 address that carries an
 * IPv4 one (::ffff:a.b.c.d, and NAT64's 64:ff9b::/96) is judged by the IPv4
 * address inside; the other IPv4-in-IPv6 forms (6to4, Teredo, SIIT) are
 * refused, since what they reach cannot be read off the address.
 */

/** A host (DNS name or IP) the operator allows, on one port or on any. */
export interface AllowedHost {
  host: string;
  port?: number;
}

const RANGE_WORDS: Record<string, string> = {
  loopback: 'loopback',
  private: 'private',
  linkLocal: 'link-local (cloud metadata lives here)',
  carrierGradeNat: 'carrier-grade NAT',
  multicast: 'multicast',
  broadcast: 'broadcast',
  unspecified: 'unspecified',
  reserved: 'reserved',
  uniqueLocal: 'unique-local',
};

/** Why `address` (an IP literal) may not be reached, or undefined when it may. Not an IP at all is refused too. */
export function addressRefusal(address: string): string | undefined {
  let ip: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    ip = ipaddr.parse(address);
  } catch {
    return `${address} is not an IP address`;
  }
  if (ip.kind() === 'ipv6') {
    const v6 = ip as ipaddr.IPv6;
    const embedded = embeddedIPv4(v6);
    if (embedded) {
      const inner = addressRefusal(embedded.toString());
      return inner ? `${inner} (inside ${address})` : undefined;
    }
  }
  const range: string = ip.range();
  if (range === 'unicast') return undefined;
  return `${RANGE_WORDS[range] ?? range} address ${address}`;
}

const NAT64_WELL_KNOWN = ipaddr.parseCIDR('64:ff9b::/96') as [ipaddr.IPv6, number];

function embeddedIPv4(ip: ipaddr.IPv6): ipaddr.IPv4 | undefined {
  if (ip.isIPv4MappedAddress()) return ip.toIPv4Address();
  if (ip.match(NAT64_WELL_KNOWN)) {
    const bytes = ip.toByteArray().slice(12);
    return new ipaddr.IPv4(bytes);
  }
  return undefined;
}

/** A host as compared: lower case, no brackets or trailing dot, an IP in one canonical spelling. */
export function normaliseHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (ipaddr.isValid(h)) {
    const ip = ipaddr.parse(h);
    return ip.kind() === 'ipv6' ? (ip as ipaddr.IPv6).toRFC5952String() : ip.toString();
  }
  return h;
}

/**
 * One allow-list entry: `host`, `host:port`, `[v6]` or `[v6]:port`. Returns
 * the entry, or a message saying what is wrong with it.
 */
export function parseAllowedHost(entry: string): AllowedHost | string {
  const text = entry.trim();
  if (!text) return 'an empty entry';
  let url: URL;
  try {
    url = new URL(`http://${text}`);
  } catch {
    return `"${text}" is not a host or host:port`;
  }
  if (url.username || url.password || url.pathname !== '/' || url.search || url.hash || text.includes('/')) {
    return `"${text}" is not a host or host:port (no scheme, path or credentials)`;
  }
  const explicitPort = /:(\d+)$/.exec(text)?.[1];
  if (explicitPort !== undefined && (Number(explicitPort) < 1 || Number(explicitPort) > 65535)) return `"${text}" has a port outside 1-65535`;
  return { host: normaliseHost(url.hostname), ...(explicitPort !== undefined ? { port: Number(explicitPort) } : {}) };
}

/** Whether `host` on `port` is named by the allow-list (an entry without a port allows every port). */
export function isAllowedHost(allow: readonly AllowedHost[], host: string, port: number): boolean {
  const h = normaliseHost(host);
  return allow.some((a) => a.host === h && (a.port === undefined || a.port === port));
}

/** The entry as written in OUTBOUND_ALLOW_HOSTS. */
export function formatAllowedHost(a: AllowedHost): string {
  const host = a.host.includes(':') ? `[${a.host}]` : a.host;
  return a.port === undefined ? host : `${host}:${a.port}`;
}
