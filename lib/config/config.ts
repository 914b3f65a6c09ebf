import path from 'node:path';
import { z } from 'zod';
import { harvestConfigFrom, harvestSettingsSchema, type HarvestConfig } from './harvest.js';
import { outboundConfigFrom, outboundSettingsSchema, type OutboundConfig } from './outbound.js';
import { payloadKeysFrom, KEY_ID_PATTERN, type PayloadKeyring } from './payload-keys.js';
import { defaultSecretProvider, type SecretProvider } from './secrets.js';
import { securityConfigFrom, securitySettingsSchema, type SecurityConfig } from './security.js';
import {
  boolSetting,
  ConfigError,
  durationSetting,
  environmentSetting,
  gatherProblems,
  mergeSettings,
  problemsOf,
  connectionUrlSetting,
  readSecrets,
  readSettingsFile,
  type RawSettings,
  type SettingProblem,
  type SettingsSource,
} from './settings.js';

export { ConfigError };

/**
 * One validated configuration for every process. Settings are named by their
 * environment variable; an optional YAML/JSON file (PROSPECTOR_CONFIG_FILE)
 * holds the same names, and the environment overrides it. The settings below
 * are validated here; the harvest's and the security layer's by the schemas
 * their modules own, composed in one load, so every setting reaches every
 * process from the environment and the file alike. Secrets are looked up
 * through a SecretProvider so they can live in files or a vault.
 */

const duration = durationSetting;
const bool = boolSetting;

const port = (fallback: number) =>
  z.coerce
    .number({ error: 'expected a port number' })
    .int('expected a whole port number')
    .min(1, 'expected a port between 1 and 65535')
    .max(65535, 'expected a port between 1 and 65535')
    .default(fallback);

const url = z.url({ error: 'expected a URL such as http://host:port' });
const optionalText = z.string().min(1).optional();

/** Settings read as plain values (env or file). */
const settingsSchema = z.object({
  PROSPECTOR_ENV: environmentSetting,
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { error: 'expected one of fatal, error, warn, info, debug, trace, silent' }).default('info'),
  DATA_DIR: z.string().min(1).default('.data'),
  SNAPSHOT_DIR: optionalText,

  PORT: port(3000),
  API_BODY_LIMIT: z.string().regex(/^\d+(b|kb|mb)$/i, 'expected a size such as "100kb" or "1mb"').default('100kb'),
  // JSON bodies nested deeper than this are refused while parsing, before any code walks them
  // (validation and the NUL check recurse: a few thousand levels overflow the stack).
  API_JSON_MAX_DEPTH: z.coerce.number({ error: 'expected a whole number of levels' }).int().min(2).max(1_000).default(64),
  HUBSPOT_WEBHOOK_MAX_BATCH: z.coerce.number({ error: 'expected a whole number of submissions' }).int().min(1).max(10_000).default(100),
  // An event's receipt outlives HubSpot's retries of a failed delivery (about 34 hours for webhook subscriptions).
  HUBSPOT_WEBHOOK_DEDUPE_WINDOW: duration('7d'),
  PUBLIC_URL: url.optional(),

  DATABASE_URL: connectionUrlSetting(['postgres', 'postgresql'], 'postgres://user:password@host:5432/prospector').optional(),
  EMBEDDED_PG_PORT: port(54329),
  DB_POOL_MAX: z.coerce.number().int().min(1).max(200).default(10),

  TEMPORAL_ADDRESS: z.string().regex(/^[^\s:]+:\d+$/, 'expected host:port, e.g. localhost:7233').default('localhost:7233'),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  TEMPORAL_TLS: bool(false),
  TEMPORAL_TLS_CERT_PATH: optionalText,
  TEMPORAL_TLS_KEY_PATH: optionalText,
  TEMPORAL_UI_PORT: port(8233),
  TEMPORAL_UI_URL: url.optional(),
  TEMPORAL_CLI_PATH: optionalText,
  TEMPORAL_ALLOW_INSECURE: bool(false),
  // Which PAYLOAD_KEYS entry encrypts new payloads (lib/config/payload-keys.ts); unset: the first.
  PAYLOAD_KEY_ID: z.string().regex(KEY_ID_PATTERN, 'expected a key id of letters, digits, ".", "_" or "-"').optional(),
  // How long a browser's sign-in to the codec endpoint lasts (api/routes/codec.ts).
  PAYLOAD_CODEC_SESSION_TTL: duration('8h', { max: 7 * 86_400_000 }),

  WORKER_SHUTDOWN_GRACE: duration('90s'),
  WORKER_METRICS_PORT: z.coerce.number().int().min(0).max(65535).default(9464),
  // Which task queues this worker process serves (comma list); unset: the intake's and the harvest's both.
  WORKER_TASK_QUEUES: optionalText,
  // V8 heap bound of a worker process in MiB (node --max-old-space-size): a blow-up ends that process, not the host.
  WORKER_MAX_HEAP: z.coerce.number({ error: 'expected a size in MiB' }).int('expected a whole number of MiB').min(128).max(65_536).default(1024),

  SANDBOX_URL: url.default('http://127.0.0.1:4010'),
  SANDBOX_PORT: port(4010),

  SENDER_EMAIL: z.email({ error: 'expected an email address' }).default('sales@prospector.example'),
  SEND_MODE: z.enum(['draft_only', 'send_on_approval'], { error: 'expected draft_only or send_on_approval' }).default('draft_only'),
  ALLOW_SEND_ON_APPROVAL: bool(false),
  APPROVAL_TIMEOUT: duration('72h'),
  APPROVAL_TOKEN_TTL: duration('12h', { max: 7 * 86_400_000 }),
  SEND_LOOKUP_PATIENCE: duration('15m'),
  INTAKE_TASK_QUEUE: optionalText,

  OPENAI_MODEL: z.string().min(1).default('gpt-4o-mini'),
  // The grounding gate's model layer (activities/intake/writer.ts): auto runs it against real OpenAI, not the sandbox.
  GROUNDING_MODEL_CHECK: z.enum(['on', 'off', 'auto'], { error: 'expected on, off or auto' }).default('auto'),
  GROUNDING_MODEL: optionalText,
  SLACK_CHANNEL: z.string().min(1).default('#prospector'),

  REDIS_URL: connectionUrlSetting(['redis', 'rediss'], 'redis://:password@host:6379').optional(),
  CORS_ORIGINS: z.string().default(''),
});

/** Settings that are secrets: looked up through the SecretProvider, never logged. */
const SECRET_SETTINGS = [
  'TEMPORAL_API_KEY',
  'GOOGLE_CLIENT_ID',
  'GOOGLE_CLIENT_SECRET',
  'GOOGLE_REFRESH_TOKEN',
  'HUBSPOT_ACCESS_TOKEN',
  'HUBSPOT_CLIENT_SECRET',
  'OPENAI_API_KEY',
  'SLACK_BOT_TOKEN',
  'SLACK_WEBHOOK_URL',
  'SLACK_SIGNING_SECRET',
  'X_BEARER_TOKEN',
  'API_KEY_PEPPER',
  'APPROVAL_TOKEN_SECRET',
  'APPROVAL_TOKEN_SECRET_PREVIOUS',
  'PAYLOAD_KEYS',
] as const;

/** Every setting read from the environment and the file: these, and those the owning modules validate. */
const SETTING_NAMES: ReadonlySet<string> = new Set([settingsSchema, harvestSettingsSchema, securitySettingsSchema, outboundSettingsSchema].flatMap((schema) => Object.keys(schema.shape)));

type SecretName = (typeof SECRET_SETTINGS)[number];

type Settings = z.output<typeof settingsSchema>;

export type ProviderName = 'google' | 'hubspot' | 'openai' | 'slack' | 'x';

/** How one provider is reached: the local sandbox, or the real service with credentials. */
export interface ProviderEndpoint {
  mode: 'sandbox' | 'live';
  /** Base URL the SDK is pointed at (the sandbox prefix in sandbox mode). */
  baseUrl: string;
}

export interface Config {
  env: Settings['PROSPECTOR_ENV'];
  logLevel: Settings['LOG_LEVEL'];
  dataDir: string;
  /** Where snapshots go when a command names no directory; unset means under dataDir (lib/ops/snapshots.ts). */
  snapshots: { dir?: string };
  api: {
    port: number;
    bodyLimit: string;
    /** Deepest nesting of a JSON body (arrays and objects) the API parses. */
    jsonMaxDepth: number;
    publicUrl: string;
    corsOrigins: string[];
    /** The HubSpot webhook: submissions taken per request, and how long an event's receipt recognises its retries. */
    hubspotWebhook: { maxBatch: number; dedupeWindowMs: number };
  };
  database: { url?: string; embeddedPort: number; poolMax: number };
  temporal: {
    address: string;
    namespace: string;
    tls: boolean;
    tlsCertPath?: string;
    tlsKeyPath?: string;
    apiKey?: string;
    uiUrl: string;
    uiPort: number;
    cliPath?: string;
    /** Production runs without mTLS or an API key to Temporal only when this is set (and says so loudly). */
    allowInsecure: boolean;
    /** Keys of the payload codec every client and worker uses (lib/config/payload-codec.ts); unset only outside production. */
    payloadKeys?: PayloadKeyring;
    /** Lifetime of a browser's codec session (the Temporal UI decoding through the API). */
    codecSessionTtlMs: number;
  };
  worker: {
    shutdownGraceMs: number;
    metricsPort: number;
    /** The task queues this process serves (WORKER_TASK_QUEUES, else the intake's and the harvest's). */
    taskQueues: string[];
    /** The V8 heap bound its supervisor starts it with, in MiB. */
    maxHeapMb: number;
  };
  sandbox: { url: string; port: number };
  outreach: {
    senderEmail: string;
    /** What the deployment allows: an intake may only narrow it (lib/domain/send-policy.ts). */
    sendMode: Settings['SEND_MODE'];
    approvalTimeoutMs: number;
    /** How long a send whose answer was lost is looked for in Gmail before a person is asked. */
    sendLookupPatienceMs: number;
  };
  /** The task queue the API starts intakes on (INTAKE_TASK_QUEUE, else the harvest's HARVEST_INTAKE_TASK_QUEUE). */
  intake: { taskQueue: string };
  approvals: {
    /** Signing secret first; a previous one still verifies during a rotation. */
    tokenSecrets: string[];
    tokenTtlMs: number;
    /** Production: every decision, whatever the channel, carries a signed token. */
    signedOnly: boolean;
  };
  /**
   * The grounding gate's model layer: a second model call lists a draft's
   * claims and the fact behind each (on with real OpenAI unless set off; the
   * sandbox's scripted answers prove nothing about a real draft).
   */
  grounding: { modelCheck: boolean; model: string };
  redisUrl?: string;
  providers: {
    google: ProviderEndpoint & { clientId?: string; clientSecret?: string; refreshToken?: string; tokenUrl: string };
    hubspot: ProviderEndpoint & { accessToken: string; clientSecret?: string };
    openai: ProviderEndpoint & { apiKey: string; model: string };
    slack: ProviderEndpoint & { botToken: string; webhookUrl: string; signingSecret?: string; channel: string };
    x: ProviderEndpoint & { bearerToken: string };
  };
  harvest: HarvestConfig;
  security: SecurityConfig;
  /** Our own fetches of URLs that configuration or data name (lib/config/outbound.ts). */
  outbound: OutboundConfig;
}

/**
 * Signs approval tokens where no secret is configured. Development only: it is
 * public, and production refuses to start with it.
 */
export const DEV_APPROVAL_TOKEN_SECRET = 'prospector-development-approval-secret-not-for-production';

/** Token the SDKs send to the sandbox; the sandbox accepts any non-empty bearer. */
export const SANDBOX_TOKEN = 'sandbox-token';

export interface LoadOptions extends SettingsSource {
  secrets?: SecretProvider;
}

export async function loadConfig(options: LoadOptions = {}): Promise<Config> {
  const env = options.env ?? process.env;
  const secrets = options.secrets ?? defaultSecretProvider(env);
  const file = readSettingsFile(env.PROSPECTOR_CONFIG_FILE);
  const problems = fileProblems(file, env.PROSPECTOR_CONFIG_FILE);
  const raw = mergeSettings(SETTING_NAMES, { overrides: options.overrides, env, file });

  const parsed = settingsSchema.safeParse(raw);
  if (!parsed.success) problems.push(...problemsOf(parsed.error, raw));
  const secretValues = await readSecrets(SECRET_SETTINGS, secrets, options.overrides, problems);
  // The rules across settings need every value above to be valid; the modules' problems are reported with theirs.
  const core = problems.length === 0 ? buildConfig(parsed.data!, secretValues) : undefined;
  if (core) problems.push(...checkPolicy(core, parsed.data!, secretValues));
  const harvest = gatherProblems(problems, () => harvestConfigFrom(raw));
  const security = gatherProblems(problems, () =>
    securityConfigFrom(raw, { production: raw.PROSPECTOR_ENV === 'production', pepper: secretValues.API_KEY_PEPPER }),
  );
  const outbound = gatherProblems(problems, () => outboundConfigFrom(raw));
  const payloadKeys = gatherProblems(problems, () =>
    payloadKeysFrom({ secret: secretValues.PAYLOAD_KEYS, keyId: parsed.data?.PAYLOAD_KEY_ID, production: raw.PROSPECTOR_ENV === 'production', dataDir: path.resolve(raw.DATA_DIR ?? '.data') }),
  );
  const intakeQueue = parsed.data?.INTAKE_TASK_QUEUE ?? harvest?.tuning.intakeTaskQueue;
  const taskQueues = harvest && intakeQueue ? gatherProblems(problems, () => workerTaskQueues(raw.WORKER_TASK_QUEUES, intakeQueue, harvest.taskQueue)) : undefined;
  if (problems.length > 0) throw new ConfigError(problems);

  return {
    ...core!,
    temporal: { ...core!.temporal, payloadKeys },
    worker: { ...core!.worker, taskQueues: taskQueues! },
    intake: { taskQueue: intakeQueue! },
    harvest: harvest!,
    security: security!,
    outbound: outbound!,
  };
}

/**
 * The task queues one worker process serves. Intake and harvest run in
 * separate processes in the dev stack and in compose, so a harvest that
 * crashes or exhausts its heap cannot stop an intake or a send; a single
 * process serving both stays possible (the default, e.g. `npm run worker`).
 */
function workerTaskQueues(value: string | undefined, intakeQueue: string, harvestQueue: string): string[] {
  const known = [...new Set([intakeQueue, harvestQueue])];
  if (!value) return known;
  const queues = [...new Set(value.split(',').map((q) => q.trim()).filter(Boolean))];
  const unknown = queues.filter((q) => !known.includes(q));
  if (queues.length === 0 || unknown.length > 0) {
    throw new ConfigError([
      {
        setting: 'WORKER_TASK_QUEUES',
        message: `expected a comma list of the intake queue "${intakeQueue}" (INTAKE_TASK_QUEUE) and/or the harvest queue "${harvestQueue}" (HARVEST_TASK_QUEUE)${unknown.length ? `, got ${unknown.map((q) => `"${q}"`).join(', ')}` : ''}`,
      },
    ]);
  }
  return queues;
}

/**
 * A file setting nobody reads is a mistake (a typo, a setting that moved), so
 * it stops the start. Secrets stay with the secret provider, out of a file
 * that is usually shared and versioned.
 */
function fileProblems(file: RawSettings, name: string | undefined): SettingProblem[] {
  const problems: SettingProblem[] = [];
  for (const key of Object.keys(file)) {
    if ((SECRET_SETTINGS as readonly string[]).includes(key)) {
      problems.push({ setting: key, message: `is a secret: give it as an environment variable, ${key}_FILE or a file in SECRETS_DIR, not in ${name}` });
    } else if (!SETTING_NAMES.has(key)) {
      problems.push({ setting: key, message: `unknown setting in ${name}` });
    }
  }
  return problems;
}

/** The configuration of the settings validated here; loadConfig adds what the modules' settings make. */
type CoreConfig = Omit<Config, 'intake' | 'harvest' | 'security' | 'outbound' | 'worker'> & { worker: Omit<Config['worker'], 'taskQueues'> };

function buildConfig(s: Settings, secret: Partial<Record<SecretName, string>>): CoreConfig {
  const sandbox = s.SANDBOX_URL.replace(/\/$/, '');
  const live = (has: boolean) => (has ? ('live' as const) : ('sandbox' as const));
  const googleLive = Boolean(secret.GOOGLE_REFRESH_TOKEN);
  const slackLive = Boolean(secret.SLACK_BOT_TOKEN || secret.SLACK_WEBHOOK_URL);
  const [host] = s.TEMPORAL_ADDRESS.split(':');
  return {
    env: s.PROSPECTOR_ENV,
    logLevel: s.LOG_LEVEL,
    dataDir: path.resolve(s.DATA_DIR),
    snapshots: { dir: s.SNAPSHOT_DIR },
    api: {
      port: s.PORT,
      bodyLimit: s.API_BODY_LIMIT,
      jsonMaxDepth: s.API_JSON_MAX_DEPTH,
      publicUrl: s.PUBLIC_URL ?? `http://localhost:${s.PORT}`,
      corsOrigins: s.CORS_ORIGINS.split(',').map((o) => o.trim()).filter(Boolean),
      hubspotWebhook: { maxBatch: s.HUBSPOT_WEBHOOK_MAX_BATCH, dedupeWindowMs: s.HUBSPOT_WEBHOOK_DEDUPE_WINDOW },
    },
    database: { url: s.DATABASE_URL, embeddedPort: s.EMBEDDED_PG_PORT, poolMax: s.DB_POOL_MAX },
    temporal: {
      address: s.TEMPORAL_ADDRESS,
      namespace: s.TEMPORAL_NAMESPACE,
      tls: s.TEMPORAL_TLS || Boolean(secret.TEMPORAL_API_KEY),
      tlsCertPath: s.TEMPORAL_TLS_CERT_PATH,
      tlsKeyPath: s.TEMPORAL_TLS_KEY_PATH,
      apiKey: secret.TEMPORAL_API_KEY,
      uiPort: s.TEMPORAL_UI_PORT,
      uiUrl: (s.TEMPORAL_UI_URL ?? `http://${host}:${s.TEMPORAL_UI_PORT}`).replace(/\/$/, ''),
      cliPath: s.TEMPORAL_CLI_PATH,
      allowInsecure: s.TEMPORAL_ALLOW_INSECURE,
      codecSessionTtlMs: s.PAYLOAD_CODEC_SESSION_TTL,
    },
    worker: { shutdownGraceMs: s.WORKER_SHUTDOWN_GRACE, metricsPort: s.WORKER_METRICS_PORT, maxHeapMb: s.WORKER_MAX_HEAP },
    sandbox: { url: sandbox, port: s.SANDBOX_PORT },
    outreach: { senderEmail: s.SENDER_EMAIL, sendMode: s.SEND_MODE, approvalTimeoutMs: s.APPROVAL_TIMEOUT, sendLookupPatienceMs: s.SEND_LOOKUP_PATIENCE },
    approvals: {
      tokenSecrets: [secret.APPROVAL_TOKEN_SECRET ?? DEV_APPROVAL_TOKEN_SECRET, ...(secret.APPROVAL_TOKEN_SECRET_PREVIOUS ? [secret.APPROVAL_TOKEN_SECRET_PREVIOUS] : [])],
      tokenTtlMs: s.APPROVAL_TOKEN_TTL,
      signedOnly: s.PROSPECTOR_ENV === 'production',
    },
    grounding: {
      modelCheck: s.GROUNDING_MODEL_CHECK === 'auto' ? Boolean(secret.OPENAI_API_KEY) : s.GROUNDING_MODEL_CHECK === 'on',
      model: s.GROUNDING_MODEL ?? s.OPENAI_MODEL,
    },
    redisUrl: s.REDIS_URL,
    providers: {
      google: {
        mode: live(googleLive),
        baseUrl: googleLive ? 'https://www.googleapis.com/' : `${sandbox}/`,
        tokenUrl: googleLive ? 'https://oauth2.googleapis.com/token' : `${sandbox}/token`,
        clientId: secret.GOOGLE_CLIENT_ID ?? (googleLive ? undefined : 'sandbox-client'),
        clientSecret: secret.GOOGLE_CLIENT_SECRET ?? (googleLive ? undefined : 'sandbox-secret'),
        refreshToken: secret.GOOGLE_REFRESH_TOKEN ?? (googleLive ? undefined : 'sandbox-refresh-token'),
      },
      hubspot: {
        mode: live(Boolean(secret.HUBSPOT_ACCESS_TOKEN)),
        baseUrl: secret.HUBSPOT_ACCESS_TOKEN ? 'https://api.hubapi.com' : `${sandbox}/hubspot`,
        accessToken: secret.HUBSPOT_ACCESS_TOKEN ?? SANDBOX_TOKEN,
        clientSecret: secret.HUBSPOT_CLIENT_SECRET ?? (secret.HUBSPOT_ACCESS_TOKEN ? undefined : 'sandbox-hubspot-secret'),
      },
      openai: {
        mode: live(Boolean(secret.OPENAI_API_KEY)),
        baseUrl: secret.OPENAI_API_KEY ? 'https://api.openai.com/v1' : `${sandbox}/openai/v1`,
        apiKey: secret.OPENAI_API_KEY ?? SANDBOX_TOKEN,
        model: s.OPENAI_MODEL,
      },
      slack: {
        mode: live(slackLive),
        baseUrl: slackLive ? 'https://slack.com/api/' : `${sandbox}/slack/api/`,
        botToken: secret.SLACK_BOT_TOKEN ?? `xoxb-${SANDBOX_TOKEN}`,
        webhookUrl: secret.SLACK_WEBHOOK_URL ?? `${sandbox}/slack/webhook/T000/B000/sandbox`,
        signingSecret: secret.SLACK_SIGNING_SECRET ?? (slackLive ? undefined : 'sandbox-slack-signing-secret'),
        channel: s.SLACK_CHANNEL,
      },
      x: {
        mode: live(Boolean(secret.X_BEARER_TOKEN)),
        baseUrl: secret.X_BEARER_TOKEN ? 'https://api.x.com' : `${sandbox}/x`,
        bearerToken: secret.X_BEARER_TOKEN ?? SANDBOX_TOKEN,
      },
    },
  };
}

/** Rules across settings: what production refuses even when each value is valid. */
function checkPolicy(config: CoreConfig, s: Settings, secret: Partial<Record<SecretName, string>>) {
  const problems: { setting: string; message: string }[] = [];
  if (config.outreach.sendMode === 'send_on_approval' && config.env === 'production' && !s.ALLOW_SEND_ON_APPROVAL) {
    problems.push({ setting: 'SEND_MODE', message: 'send_on_approval in production needs ALLOW_SEND_ON_APPROVAL=true' });
  }
  if (config.env === 'production') {
    const secretValue = secret.APPROVAL_TOKEN_SECRET;
    if (!secretValue || secretValue === DEV_APPROVAL_TOKEN_SECRET) {
      problems.push({ setting: 'APPROVAL_TOKEN_SECRET', message: 'required in production: a random secret of at least 32 characters (e.g. `openssl rand -hex 32`)' });
    }
    const authenticated = Boolean(config.temporal.apiKey) || Boolean(config.temporal.tlsCertPath && config.temporal.tlsKeyPath);
    if (!authenticated && !config.temporal.allowInsecure) {
      problems.push({
        setting: 'TEMPORAL_ADDRESS',
        message:
          'production needs an authenticated Temporal connection (TEMPORAL_TLS_CERT_PATH + TEMPORAL_TLS_KEY_PATH for mTLS, or TEMPORAL_API_KEY): ' +
          'whoever reaches Temporal can signal intakes. TEMPORAL_ALLOW_INSECURE=true overrides this on a private network.',
      });
    }
    if (!s.DATABASE_URL) problems.push({ setting: 'DATABASE_URL', message: 'required in production (the embedded database is for development)' });
    for (const [name, value] of Object.entries(config.providers)) {
      if (value.mode === 'sandbox') problems.push({ setting: providerCredential(name as ProviderName), message: `required in production: ${name} would talk to the sandbox` });
    }
    if (config.providers.google.mode === 'live' && (!secret.GOOGLE_CLIENT_ID || !secret.GOOGLE_CLIENT_SECRET)) {
      problems.push({ setting: 'GOOGLE_CLIENT_ID', message: 'GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET are required with GOOGLE_REFRESH_TOKEN' });
    }
  }
  for (const name of ['APPROVAL_TOKEN_SECRET', 'APPROVAL_TOKEN_SECRET_PREVIOUS'] as const) {
    const value = secret[name];
    if (value !== undefined && value.length < 32) problems.push({ setting: name, message: 'must be at least 32 characters' });
  }
  if (Boolean(s.TEMPORAL_TLS_CERT_PATH) !== Boolean(s.TEMPORAL_TLS_KEY_PATH)) {
    problems.push({ setting: 'TEMPORAL_TLS_CERT_PATH', message: 'TEMPORAL_TLS_CERT_PATH and TEMPORAL_TLS_KEY_PATH must be set together' });
  }
  return problems;
}

function providerCredential(name: ProviderName): string {
  return { google: 'GOOGLE_REFRESH_TOKEN', hubspot: 'HUBSPOT_ACCESS_TOKEN', openai: 'OPENAI_API_KEY', slack: 'SLACK_BOT_TOKEN', x: 'X_BEARER_TOKEN' }[name];
}

/** Loads config or ends the process with a message naming each bad setting. */
export async function loadConfigOrExit(options: LoadOptions = {}): Promise<Config> {
  try {
    return await loadConfig(options);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
}
