import { readFileSync } from 'node:fs';
import ms from 'ms';
import YAML from 'yaml';
import { z } from 'zod';
import { ConfigError, durationSetting } from './config.js';
import { defaultSecretProvider, type SecretProvider } from './secrets.js';

/**
 * Settings of the API's security layer (keys, rate limits, audit), validated
 * like lib/config/config.ts and named by their environment variable. Kept apart from
 * the main config because only the API and the `keys` CLI need them.
 *
 * Rate limits are written "<requests>/<window>", e.g. "300/1m" or "20/1s",
 * or "off".
 */

export interface RateLimit {
  points: number;
  /** Window in whole seconds (what rate-limiter-flexible counts in). */
  durationS: number;
}

export interface SecurityConfig {
  /** HMAC key for API key hashes (secret provider: API_KEY_PEPPER). */
  pepper: string;
  /** "live" in production, "test" elsewhere: the marker inside every key. */
  keyEnvironment: 'live' | 'test';
  /** How long a looked-up key is trusted without asking the database (≤ 1 s: revocation promise). */
  keyCacheTtlMs: number;
  /** Default overlap during which a rotated key keeps working. */
  rotationOverlapMs: number;
  rateLimits: {
    /** Per key and route, unless the route has its own entry; undefined = off. */
    route?: RateLimit;
    /** Per key across all routes (a key's own rate_limit overrides it); undefined = off. */
    key?: RateLimit;
    /** Per client address and route, for routes without keys (public, signed webhooks); undefined = off. */
    anonymous?: RateLimit;
    /** Per-route overrides by operationId, rate-limit bucket, or "METHOD /v1/path"; undefined = off. */
    routes: Record<string, RateLimit | undefined>;
  };
  audit: { flushIntervalMs: number; batchSize: number; maxQueue: number };
}

export const DEV_PEPPER = 'prospector-development-pepper-do-not-use-in-production';

const RATE_RE = /^(\d+)\s*\/\s*(\d*\s*[a-z]+)$/i;

/** "300/1m" → { points: 300, durationS: 60 }; "off" → undefined. */
export function parseRateLimit(text: string): RateLimit | undefined {
  const value = text.trim();
  if (value.toLowerCase() === 'off') return undefined;
  const match = RATE_RE.exec(value);
  const windowText = match?.[2]?.replace(/\s+/g, '');
  const windowMs = windowText ? ms((/^\d/.test(windowText) ? windowText : `1${windowText}`) as ms.StringValue) : NaN;
  const points = Number(match?.[1]);
  if (!match || !Number.isInteger(points) || points < 1 || typeof windowMs !== 'number' || !(windowMs >= 1000) || windowMs % 1000 !== 0) {
    throw new Error(`expected "<requests>/<window>" such as "300/1m" or "20/1s" (whole seconds), or "off"; got "${text}"`);
  }
  return { points, durationS: windowMs / 1000 };
}

export function formatRateLimit(limit: RateLimit | undefined): string {
  return limit ? `${limit.points}/${ms(limit.durationS * 1000)}` : 'off';
}

const rate = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((value, ctx) => {
      try {
        return parseRateLimit(value);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    });

const duration = (fallback: string, max?: number) => durationSetting(fallback, { allowZero: true, max });

const schema = z.object({
  PROSPECTOR_ENV: z.enum(['development', 'test', 'production']).default('development'),
  // Revocation must reach every replica within 1 s, so the cache may not hold a key longer.
  API_KEY_CACHE_TTL: duration('500ms', 1000),
  API_KEY_ROTATION_OVERLAP: duration('24h'),
  RATE_LIMIT_DEFAULT: rate('300/1m'),
  RATE_LIMIT_KEY: rate('1200/1m'),
  RATE_LIMIT_ANONYMOUS: rate('600/1m'),
  RATE_LIMIT_ROUTES: z
    .string()
    .default('{}')
    .transform((value, ctx) => {
      let data: unknown;
      try {
        data = JSON.parse(value);
      } catch {
        ctx.addIssue({ code: 'custom', message: 'expected a JSON object such as {"createProspect":"600/1m","GET /v1/signals":"off"}' });
        return z.NEVER;
      }
      if (!data || typeof data !== 'object' || Array.isArray(data)) {
        ctx.addIssue({ code: 'custom', message: 'expected a JSON object of route → "<requests>/<window>"' });
        return z.NEVER;
      }
      const out: Record<string, RateLimit | undefined> = {};
      for (const [routeName, limit] of Object.entries(data)) {
        try {
          out[routeName] = parseRateLimit(String(limit));
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: `${routeName}: ${(err as Error).message}` });
        }
      }
      return out;
    }),
  AUDIT_FLUSH_INTERVAL: duration('250ms', 10_000),
  AUDIT_BATCH_SIZE: z.coerce.number().int().min(1).max(5000).default(500),
  AUDIT_MAX_QUEUE: z.coerce.number().int().min(100).default(100_000),
});

export interface SecurityLoadOptions {
  env?: NodeJS.ProcessEnv;
  secrets?: SecretProvider;
  /** Settings that win over env (tests, benchmarks). API_KEY_PEPPER may be given here too. */
  overrides?: Record<string, string | undefined>;
}

/** Loads and validates the security settings; throws ConfigError naming each bad setting. */
export async function loadSecurityConfig(options: SecurityLoadOptions = {}): Promise<SecurityConfig> {
  const env = options.env ?? process.env;
  const file = fileSettings(env.PROSPECTOR_CONFIG_FILE);
  const raw: Record<string, string> = {};
  for (const key of Object.keys(schema.shape)) {
    const value = options.overrides?.[key] ?? env[key] ?? file[key];
    if (value !== undefined && value !== '') raw[key] = value;
  }
  const parsed = schema.safeParse(raw);
  const problems = parsed.success ? [] : parsed.error.issues.map((i) => ({ setting: String(i.path[0] ?? 'security'), message: i.message }));

  let pepper: string | undefined;
  try {
    pepper = options.overrides?.API_KEY_PEPPER ?? (await (options.secrets ?? defaultSecretProvider(env)).get('API_KEY_PEPPER'));
  } catch (err) {
    problems.push({ setting: 'API_KEY_PEPPER', message: (err as Error).message });
  }
  const production = (raw.PROSPECTOR_ENV ?? 'development') === 'production';
  if (production && (!pepper || pepper === DEV_PEPPER)) {
    problems.push({ setting: 'API_KEY_PEPPER', message: 'required in production: a random secret of at least 32 characters (e.g. `openssl rand -hex 32`)' });
  } else if (pepper !== undefined && pepper.length < 32) {
    problems.push({ setting: 'API_KEY_PEPPER', message: 'must be at least 32 characters' });
  }
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);

  const s = parsed.data;
  return {
    pepper: pepper ?? DEV_PEPPER,
    keyEnvironment: production ? 'live' : 'test',
    keyCacheTtlMs: s.API_KEY_CACHE_TTL,
    rotationOverlapMs: s.API_KEY_ROTATION_OVERLAP,
    rateLimits: {
      route: s.RATE_LIMIT_DEFAULT,
      key: s.RATE_LIMIT_KEY,
      anonymous: s.RATE_LIMIT_ANONYMOUS,
      routes: s.RATE_LIMIT_ROUTES,
    },
    audit: { flushIntervalMs: s.AUDIT_FLUSH_INTERVAL, batchSize: s.AUDIT_BATCH_SIZE, maxQueue: s.AUDIT_MAX_QUEUE },
  };
}

/** The same optional settings file lib/config/config.ts reads (PROSPECTOR_CONFIG_FILE); the environment wins over it. */
function fileSettings(file: string | undefined): Record<string, string> {
  if (!file) return {};
  try {
    const data = YAML.parse(readFileSync(file, 'utf8')) as unknown;
    if (!data || typeof data !== 'object' || Array.isArray(data)) return {};
    const out: Record<string, string> = {};
    for (const [key, value] of Object.entries(data)) {
      if (key in schema.shape) out[key] = typeof value === 'object' ? JSON.stringify(value) : String(value);
    }
    return out;
  } catch {
    return {}; // lib/config/config.ts reports an unreadable or invalid file, naming it
  }
}
