import ms from 'ms';
import { z } from 'zod';
import { defaultSecretProvider, type SecretProvider } from './secrets.js';
import { ConfigError, durationSetting, environmentSetting, gatherProblems, problemsOf, readSecrets, readSettings, type RawSettings, type SettingProblem, type SettingsSource } from './settings.js';

/**
 * Settings of the API's security layer (keys, rate limits, audit), named by
 * their environment variable. This module owns their rules; lib/config/config.ts
 * composes them into the one configuration, read from the environment and the
 * config file alike, with the pepper from the secret provider.
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
    /**
     * Failed authentications (401: no, bad, revoked or expired key; a wrong webhook signature) per
     * client address; once spent, every keyed or signed request from it gets 429. undefined = off.
     */
    authFailures?: RateLimit;
  };
  /** Batching of the auth audit, and how long its rows are kept (deleted after, by every replica's pruning). */
  audit: { flushIntervalMs: number; batchSize: number; maxQueue: number; retentionMs: number };
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

export const securitySettingsSchema = z.object({
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
  AUTH_AUDIT_RETENTION: durationSetting('90d'),
  RATE_LIMIT_AUTH_FAILURES: rate('30/1m'),
});

export interface SecurityLoadOptions extends SettingsSource {
  secrets?: SecretProvider;
  /** Settings that win over env and file (tests, benchmarks). API_KEY_PEPPER may be given here too. */
  overrides?: Record<string, string | undefined>;
}

/**
 * The security settings from the environment and the config file, the pepper
 * from the secret provider (callers with a loaded Config use `config.security`).
 * Throws ConfigError naming each bad setting.
 */
export async function loadSecurityConfig(options: SecurityLoadOptions = {}): Promise<SecurityConfig> {
  const env = options.env ?? process.env;
  const raw = readSettings([...Object.keys(securitySettingsSchema.shape), 'PROSPECTOR_ENV'], options);
  const problems: SettingProblem[] = [];
  const environment = z.object({ PROSPECTOR_ENV: environmentSetting }).safeParse(raw);
  if (!environment.success) problems.push(...problemsOf(environment.error, raw));
  const { API_KEY_PEPPER: pepper } = await readSecrets(['API_KEY_PEPPER'], options.secrets ?? defaultSecretProvider(env), options.overrides, problems);
  const security = gatherProblems(problems, () => securityConfigFrom(raw, { production: environment.data?.PROSPECTOR_ENV === 'production', pepper }));
  if (problems.length > 0) throw new ConfigError(problems);
  return security!;
}

/** The security configuration from raw settings and the pepper; throws a ConfigError naming every bad setting. */
export function securityConfigFrom(raw: RawSettings, context: { production: boolean; pepper?: string }): SecurityConfig {
  const { production, pepper } = context;
  const parsed = securitySettingsSchema.safeParse(raw);
  const problems = parsed.success ? [] : problemsOf(parsed.error, raw);
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
      authFailures: s.RATE_LIMIT_AUTH_FAILURES,
    },
    audit: { flushIntervalMs: s.AUDIT_FLUSH_INTERVAL, batchSize: s.AUDIT_BATCH_SIZE, maxQueue: s.AUDIT_MAX_QUEUE, retentionMs: s.AUTH_AUDIT_RETENTION },
  };
}
