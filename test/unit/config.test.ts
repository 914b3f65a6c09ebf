import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../lib/config/config.js';
import { loadHarvestConfig } from '../../lib/config/harvest.js';
import { loadSecurityConfig } from '../../lib/config/security.js';
import { ROOT } from '../../lib/config/paths.js';
import { ChainSecretProvider, EnvSecretProvider, FileSecretProvider } from '../../lib/config/secrets.js';

async function problemsOf(env: NodeJS.ProcessEnv): Promise<string[]> {
  try {
    await loadConfig({ env });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.setting}: ${p.message}`);
    throw err;
  }
  return [];
}

function configFile(...lines: string[]): string {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'cfg-')), 'prospector.yaml');
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

describe('configuration', () => {
  it('defaults to the sandbox for every provider without credentials', async () => {
    const config = await loadConfig({ env: {} });
    expect(Object.values(config.providers).map((p) => p.mode)).toEqual(['sandbox', 'sandbox', 'sandbox', 'sandbox', 'sandbox']);
    expect(config.providers.hubspot.baseUrl).toBe('http://127.0.0.1:4010/hubspot');
    expect(config.outreach.sendMode).toBe('draft_only');
    expect(config.outreach.approvalTimeoutMs).toBe(72 * 3600_000);
  });

  it('names each invalid setting with what was expected and what was given', async () => {
    const problems = await problemsOf({ PORT: 'abc', SEND_MODE: 'yolo', APPROVAL_TIMEOUT: 'soon', TEMPORAL_ADDRESS: 'nohost' });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^PORT: .*port.*"abc"/),
        expect.stringMatching(/^SEND_MODE: expected draft_only or send_on_approval.*"yolo"/),
        expect.stringMatching(/^APPROVAL_TIMEOUT: .*duration.*"soon"/),
        expect.stringMatching(/^TEMPORAL_ADDRESS: expected host:port/),
      ]),
    );
  });

  it('names a bad connection URL without repeating it: no password reaches the error, from env or file', async () => {
    const problems = await problemsOf({
      DATABASE_URL: 'postgress://prospector:hunter2-db@db.internal:5432/prospector',
      REDIS_URL: 'redis//:hunter2-redis@cache.internal:6379',
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^DATABASE_URL: expected a connection URL such as postgres:\/\/.*not shown/),
        expect.stringMatching(/^REDIS_URL: expected a connection URL such as redis:\/\/.*not shown/),
      ]),
    );
    expect(problems.join('\n')).not.toMatch(/hunter2|db\.internal|cache\.internal/);
    const fromFile = await problemsOf({ PROSPECTOR_CONFIG_FILE: configFile('DATABASE_URL: "mysql://root:hunter2-file@db:3306/x"', 'SANDBOX_URL: "not a url with hunter2-sandbox"') });
    expect(fromFile.join('\n')).toMatch(/DATABASE_URL: expected a connection URL/);
    expect(fromFile.join('\n')).toMatch(/SANDBOX_URL: expected a URL/);
    expect(fromFile.join('\n')).not.toContain('hunter2');
    // A valid URL with a password loads as given.
    const config = await loadConfig({ env: { DATABASE_URL: 'postgresql://u:p%40ss@db:5432/x', REDIS_URL: 'rediss://:pw@cache:6380' } });
    expect(config.database.url).toBe('postgresql://u:p%40ss@db:5432/x');
    expect(config.redisUrl).toBe('rediss://:pw@cache:6380');
  });

  it('runs the grounding gate\'s model layer against real OpenAI by default, never against the sandbox unless asked', async () => {
    expect((await loadConfig({ env: {} })).grounding).toEqual({ modelCheck: false, model: 'gpt-4o-mini' });
    expect((await loadConfig({ env: { OPENAI_API_KEY: 'sk-test', OPENAI_MODEL: 'gpt-4.1' } })).grounding).toEqual({ modelCheck: true, model: 'gpt-4.1' });
    expect((await loadConfig({ env: { OPENAI_API_KEY: 'sk-test', GROUNDING_MODEL_CHECK: 'off' } })).grounding.modelCheck).toBe(false);
    expect((await loadConfig({ env: { GROUNDING_MODEL_CHECK: 'on', GROUNDING_MODEL: 'gpt-4.1-mini' } })).grounding).toEqual({ modelCheck: true, model: 'gpt-4.1-mini' });
    expect(await problemsOf({ GROUNDING_MODEL_CHECK: 'sometimes' })).toEqual([expect.stringMatching(/^GROUNDING_MODEL_CHECK: expected on, off or auto.*"sometimes"/)]);
  });

  it('uses live endpoints once credentials exist, from env or from secret files', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'secrets-'));
    writeFileSync(path.join(dir, 'hubspot_access_token'), 'pat-from-file\n');
    writeFileSync(path.join(dir, 'openai-key'), 'sk-from-explicit-file');
    const env = { SECRETS_DIR: dir, OPENAI_API_KEY_FILE: path.join(dir, 'openai-key'), X_BEARER_TOKEN: 'x-from-env' };
    const config = await loadConfig({ env });
    expect(config.providers.hubspot).toMatchObject({ mode: 'live', accessToken: 'pat-from-file', baseUrl: 'https://api.hubapi.com' });
    expect(config.providers.openai).toMatchObject({ mode: 'live', apiKey: 'sk-from-explicit-file' });
    expect(config.providers.x).toMatchObject({ mode: 'live', bearerToken: 'x-from-env' });
    expect(config.providers.slack.mode).toBe('sandbox');
  });

  it('fails naming the secret when its file cannot be read', async () => {
    const problems = await problemsOf({ SLACK_BOT_TOKEN_FILE: '/nonexistent/slack-token' });
    expect(problems).toEqual([expect.stringMatching(/^SLACK_BOT_TOKEN: .*\/nonexistent\/slack-token.*ENOENT/)]);
  });

  it('reads a YAML config file, with the environment winning', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'cfg-'));
    const file = path.join(dir, 'prospector.yaml');
    writeFileSync(file, 'PORT: 4000\nLOG_LEVEL: debug\n');
    const config = await loadConfig({ env: { PROSPECTOR_CONFIG_FILE: file, LOG_LEVEL: 'warn' } });
    expect(config.api.port).toBe(4000);
    expect(config.logLevel).toBe('warn');
    writeFileSync(file, 'PROT: 4000\n');
    expect(await problemsOf({ PROSPECTOR_CONFIG_FILE: file })).toEqual([expect.stringMatching(/^PROT: unknown setting/)]);
  });

  it('refuses unsafe production setups', async () => {
    const problems = await problemsOf({ PROSPECTOR_ENV: 'production', SEND_MODE: 'send_on_approval' });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^SEND_MODE: send_on_approval in production needs ALLOW_SEND_ON_APPROVAL=true/),
        expect.stringMatching(/^DATABASE_URL: required in production/),
        expect.stringMatching(/^HUBSPOT_ACCESS_TOKEN: required in production/),
        expect.stringMatching(/^API_KEY_PEPPER: required in production/),
      ]),
    );
  });

  it('requires the Temporal TLS certificate and key together', async () => {
    expect(await problemsOf({ TEMPORAL_TLS_CERT_PATH: '/etc/prospector/client.pem' })).toEqual([expect.stringMatching(/^TEMPORAL_TLS_CERT_PATH: .*set together/)]);
    const config = await loadConfig({ env: { TEMPORAL_TLS_CERT_PATH: '/etc/prospector/client.pem', TEMPORAL_TLS_KEY_PATH: '/etc/prospector/client.key' } });
    expect(config.temporal).toMatchObject({ tlsCertPath: '/etc/prospector/client.pem', tlsKeyPath: '/etc/prospector/client.key' });
  });

  it('takes harvest, scoring, security, intake and snapshot settings from the config file', async () => {
    const file = configFile(
      'HARVEST_INTERVAL: 5m',
      'HARVEST_SCORE_BASE: 3',
      'HARVEST_SCORE_CATEGORY_BOOSTS: bug=2',
      'HARVEST_QUERIES:',
      '  - { name: launches, source: feed, url: "https://blog.example/feed.xml" }',
      'RATE_LIMIT_DEFAULT: 20/1s',
      'RATE_LIMIT_ROUTES:',
      '  createProspect: 5/1m',
      'API_KEY_CACHE_TTL: 250ms',
      'AUDIT_BATCH_SIZE: 50',
      'INTAKE_TASK_QUEUE: intakes-b',
      'SNAPSHOT_DIR: /srv/prospector-snapshots',
    );
    const config = await loadConfig({ env: { PROSPECTOR_CONFIG_FILE: file } });
    expect(config.harvest.schedule.intervalMs).toBe(5 * 60_000);
    expect(config.harvest.weights.base).toBe(3);
    expect(config.harvest.weights.categoryBoost.bug).toBe(2);
    expect(config.harvest.queries).toEqual([{ name: 'launches', source: 'feed', url: 'https://blog.example/feed.xml', startIntake: false, enabled: true }]);
    expect(config.security.rateLimits.route).toEqual({ points: 20, durationS: 1 });
    expect(config.security.rateLimits.routes).toEqual({ createProspect: { points: 5, durationS: 60 } });
    expect(config.security.keyCacheTtlMs).toBe(250);
    expect(config.security.audit.batchSize).toBe(50);
    expect(config.intake.taskQueue).toBe('intakes-b');
    expect(config.snapshots.dir).toBe('/srv/prospector-snapshots');

    // Callers without a loaded Config read the same file.
    expect(loadHarvestConfig({ env: { PROSPECTOR_CONFIG_FILE: file } }).schedule.intervalMs).toBe(5 * 60_000);
    expect((await loadSecurityConfig({ env: { PROSPECTOR_CONFIG_FILE: file } })).rateLimits.route).toEqual({ points: 20, durationS: 1 });
  });

  it('lets the environment override the file for module settings, and overrides win over both', async () => {
    const file = configFile('HARVEST_INTERVAL: 5m', 'HARVEST_INTAKE_TASK_QUEUE: from-file', 'RATE_LIMIT_DEFAULT: 20/1s', 'API_KEY_CACHE_TTL: 250ms');
    const env = { PROSPECTOR_CONFIG_FILE: file, HARVEST_INTERVAL: '30m', RATE_LIMIT_DEFAULT: 'off', API_KEY_CACHE_TTL: '1s' };
    const config = await loadConfig({ env });
    expect(config.harvest.schedule.intervalMs).toBe(30 * 60_000);
    expect(config.harvest.tuning.intakeTaskQueue).toBe('from-file');
    expect(config.intake.taskQueue).toBe('from-file');
    expect(config.security.rateLimits.route).toBeUndefined();
    expect(config.security.keyCacheTtlMs).toBe(1000);
    expect(loadHarvestConfig({ env }).schedule.intervalMs).toBe(30 * 60_000);
    expect((await loadSecurityConfig({ env })).keyCacheTtlMs).toBe(1000);

    const overridden = await loadConfig({ env, overrides: { HARVEST_INTERVAL: '1h', RATE_LIMIT_DEFAULT: '7/1s' } });
    expect(overridden.harvest.schedule.intervalMs).toBe(3_600_000);
    expect(overridden.security.rateLimits.route).toEqual({ points: 7, durationS: 1 });
  });

  it('names each invalid module setting from the file', async () => {
    const file = configFile('HARVEST_PAGE_SIZE: 5', 'HARVEST_INTAKE_CATEGORIES: buying_intent,hype', 'RATE_LIMIT_KEY: ten per minute', 'API_KEY_CACHE_TTL: 5s');
    const problems = await problemsOf({ PROSPECTOR_CONFIG_FILE: file });
    expect(problems).toHaveLength(4);
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^HARVEST_PAGE_SIZE: .*"5"/),
        expect.stringMatching(/^HARVEST_INTAKE_CATEGORIES: unknown categories hype/),
        expect.stringMatching(/^RATE_LIMIT_KEY: expected "<requests>\/<window>".*"ten per minute"/),
        expect.stringMatching(/^API_KEY_CACHE_TTL: expected a duration .* of at most 1s, got "5s"/),
      ]),
    );
  });

  it('refuses names in the file that no setting has, and secrets there, naming each', async () => {
    const pepper = 'p'.repeat(40);
    const file = configFile('HARVEST_INTERVALL: 5m', 'RATE_LIMIT_DEFALT: 20/1s', 'INTAKE_QUEUE: other', 'PORT: 4000', `API_KEY_PEPPER: ${pepper}`);
    const problems = await problemsOf({ PROSPECTOR_CONFIG_FILE: file });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^HARVEST_INTERVALL: unknown setting in .*prospector\.yaml$/),
        expect.stringMatching(/^RATE_LIMIT_DEFALT: unknown setting/),
        expect.stringMatching(/^INTAKE_QUEUE: unknown setting/),
        expect.stringMatching(/^API_KEY_PEPPER: is a secret/),
      ]),
    );
    expect(problems).toHaveLength(4);
    expect(problems.join('\n')).not.toContain(pepper);
  });

  it('chains secret providers in order', async () => {
    const chain = new ChainSecretProvider([new EnvSecretProvider({ A: 'env' }), new FileSecretProvider({}, undefined)]);
    expect(await chain.get('A')).toBe('env');
    expect(await chain.get('B')).toBeUndefined();
  });

  it.each([
    ['api/main.ts', 'PORT', 'abc'],
    ['workers/main.ts', 'WORKER_SHUTDOWN_GRACE', 'never'],
    ['infra/dev/up.ts', 'SEND_MODE', 'always'],
  ])('%s exits non-zero naming %s when it is invalid', (entry, setting, value) => {
    const out = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, entry)], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, [setting]: value },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(out.status).toBe(78);
    expect(out.stderr).toContain(`${setting}:`);
    expect(out.stderr).toContain(`"${value}"`);
  });

  it('a bad harvest setting in the config file stops a process with exit code 78, naming it', () => {
    const file = configFile('HARVEST_INTERVAL: soon');
    const out = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'api/main.ts')], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, PROSPECTOR_CONFIG_FILE: file },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(out.status).toBe(78);
    expect(out.stderr).toMatch(/HARVEST_INTERVAL: .*"soon"/);
  });
});
