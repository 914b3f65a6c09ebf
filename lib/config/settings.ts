import { readFileSync } from 'node:fs';
import ms from 'ms';
import YAML from 'yaml';
import { z } from 'zod';
import type { SecretProvider } from './secrets.js';

/**
 * What every settings module shares: where raw values come from, the value
 * types settings are written in, and the error that names bad settings.
 * lib/config/config.ts composes the modules' schemas into the one configuration;
 * the modules (lib/config/harvest.ts, lib/config/security.ts) own their rules.
 * Kept apart from config.ts so those modules can use it while config.ts imports them.
 */

export interface SettingProblem {
  setting: string;
  message: string;
}

export class ConfigError extends Error {
  constructor(readonly problems: SettingProblem[]) {
    super(
      `Invalid configuration:\n${problems.map((p) => `  - ${p.setting}: ${p.message}`).join('\n')}`,
    );
    this.name = 'ConfigError';
  }
}

/** Raw values by setting name, as written in the environment or the file. */
export type RawSettings = Record<string, string>;

export interface SettingsSource {
  env?: NodeJS.ProcessEnv;
  /** Settings that win over env and file (tests, the dev supervisor). */
  overrides?: Record<string, string | undefined>;
}

/**
 * The optional settings file (PROSPECTOR_CONFIG_FILE): a YAML/JSON map of
 * SETTING: value. A map or list value (RATE_LIMIT_ROUTES, HARVEST_QUERIES) is
 * passed on as JSON, which those settings read; an empty value leaves the default.
 */
export function readSettingsFile(file: string | undefined): RawSettings {
  if (!file) return {};
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{ setting: 'PROSPECTOR_CONFIG_FILE', message: `cannot read ${file} (${(err as NodeJS.ErrnoException).code})` }]);
  }
  let data: unknown;
  try {
    data = YAML.parse(text);
  } catch (err) {
    throw new ConfigError([{ setting: 'PROSPECTOR_CONFIG_FILE', message: `${file} is not valid YAML/JSON: ${(err as Error).message}` }]);
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError([{ setting: 'PROSPECTOR_CONFIG_FILE', message: `${file} must hold a map of SETTING: value` }]);
  }
  const out: RawSettings = {};
  for (const [key, value] of Object.entries(data)) {
    out[key] = value === null || value === undefined ? '' : typeof value === 'object' ? JSON.stringify(value) : String(value);
  }
  return out;
}

/** Each named setting's value: an override, else the environment, else the file. An empty value counts as unset. */
export function mergeSettings(
  names: Iterable<string>,
  sources: { overrides?: Record<string, string | undefined>; env: NodeJS.ProcessEnv; file: RawSettings },
): RawSettings {
  const out: RawSettings = {};
  for (const name of names) {
    const value = [sources.overrides?.[name], sources.env[name], sources.file[name]].find((v) => v !== undefined && v !== '');
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/** The named settings from the same sources the one configuration reads: overrides, environment, PROSPECTOR_CONFIG_FILE. */
export function readSettings(names: Iterable<string>, source: SettingsSource = {}): RawSettings {
  const env = source.env ?? process.env;
  return mergeSettings(names, { overrides: source.overrides, env, file: readSettingsFile(env.PROSPECTOR_CONFIG_FILE) });
}

/** Secrets by name through the provider (an override wins); a failed lookup becomes a problem naming the secret. */
export async function readSecrets<Name extends string>(
  names: readonly Name[],
  secrets: SecretProvider,
  overrides: Record<string, string | undefined> | undefined,
  problems: SettingProblem[],
): Promise<Partial<Record<Name, string>>> {
  const values: Partial<Record<Name, string>> = {};
  for (const name of names) {
    try {
      const value = overrides?.[name] ?? (await secrets.get(name));
      if (value !== undefined) values[name] = value;
    } catch (err) {
      problems.push({ setting: name, message: (err as Error).message });
    }
  }
  return values;
}

/**
 * Settings whose value can carry a credential: any URL (user:password, a
 * token in the path such as a Slack webhook), tokens, secrets, passwords and
 * keys. Problems with them name the setting and never show the value.
 */
export function mayHoldCredentials(setting: string): boolean {
  return /(_URL|_URI|_DSN|_KEY|_KEYS)$|TOKEN|SECRET|PASSWORD|CREDENTIAL|PEPPER/.test(setting);
}

/** zod's issues as problems naming the setting, with the value given unless it may hold a credential. */
export function problemsOf(error: z.ZodError, raw: RawSettings): SettingProblem[] {
  return error.issues.map((issue) => {
    const setting = String(issue.path[0] ?? 'config');
    const value = raw[setting];
    const hidden = mayHoldCredentials(setting);
    const shown = issue.code === 'custom' || value === undefined || hidden ? '' : `, got "${value}"`;
    const why = hidden && value !== undefined ? ' (the value is not shown: it can hold a password or token)' : '';
    return { setting, message: `${issue.message}${shown}${why}` };
  });
}

/**
 * A connection URL with one of `schemes`, parsed (not pattern-matched), whose
 * problems never repeat the value: it usually carries a password.
 */
export const connectionUrlSetting = (schemes: string[], example: string) =>
  z.string().refine(
    (value) => {
      try {
        return schemes.includes(new URL(value).protocol.replace(/:$/, ''));
      } catch {
        return false;
      }
    },
    { message: `expected a connection URL such as ${example}` },
  );

/** Runs `build`; the problems of a ConfigError it throws are added to `problems` (and undefined returned). */
export function gatherProblems<T>(problems: SettingProblem[], build: () => T): T | undefined {
  try {
    return build();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...err.problems);
    return undefined;
  }
}

export const environmentSetting = z
  .enum(['development', 'test', 'production'], { error: 'expected development, test or production' })
  .default('development');
export type Environment = z.output<typeof environmentSetting>;

/** A duration setting such as "30s", "15m" or "72h", parsed to milliseconds. */
export const durationSetting = (fallback: string, bounds: { allowZero?: boolean; max?: number } = {}) =>
  z
    .string()
    .default(fallback)
    .transform((value, ctx) => {
      const parsed = ms(value as ms.StringValue);
      const tooSmall = typeof parsed === 'number' && (bounds.allowZero ? parsed < 0 : parsed <= 0);
      if (typeof parsed !== 'number' || !Number.isFinite(parsed) || tooSmall || (bounds.max !== undefined && parsed > bounds.max)) {
        const limit = bounds.max !== undefined ? ` of at most ${ms(bounds.max)}` : '';
        ctx.addIssue({ code: 'custom', message: `expected a duration such as "500ms", "30s", "15m" or "72h"${limit}, got "${value}"` });
        return z.NEVER;
      }
      return parsed;
    });

export const boolSetting = (fallback: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no'], { error: 'expected true or false' })
    .default(fallback ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1' || v === 'yes');
