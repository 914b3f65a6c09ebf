import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../lib/config/config.js';
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
      ]),
    );
  });

  it('requires a shutdown grace longer than the activity timeout', async () => {
    expect(await problemsOf({ WORKER_SHUTDOWN_GRACE: '10s', ACTIVITY_TIMEOUT: '30s' })).toEqual([expect.stringMatching(/^WORKER_SHUTDOWN_GRACE: must be longer/)]);
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
});
