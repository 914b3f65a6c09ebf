import type { Command } from 'commander';
import { createCalendar, createGoogleAuth } from '../../activities/providers/google.js';
import { createHubspot } from '../../activities/providers/hubspot.js';
import { createOpenAI } from '../../activities/providers/openai.js';
import { createSlack } from '../../activities/providers/slack.js';
import { createX, searchRecent } from '../../activities/providers/x.js';
import { ConfigError, type Config } from '../../lib/config/config.js';
import { createPool } from '../../lib/store/db.js';
import { readdirSync } from 'node:fs';
import { MIGRATIONS_DIR } from '../../lib/store/db.js';
import { SEARCH_ATTRIBUTES } from '../../lib/domain/search-attributes.js';
import { connectClient } from '../../lib/config/temporal.js';
import { CliError, type CliContext } from '../context.js';

interface Check {
  name: string;
  run(config: Config): Promise<string>;
}

const TIMEOUT_MS = 5_000;

/** Each dependency, reached for real: a passing doctor means the stack can work. */
export const checks: Check[] = [
  {
    name: 'Temporal',
    async run(config) {
      const client = await connectClient(config.temporal);
      try {
        const deadline = Date.now() + TIMEOUT_MS;
        await client.connection.withDeadline(deadline, () => client.connection.workflowService.describeNamespace({ namespace: config.temporal.namespace }));
        const attrs = await client.connection.withDeadline(deadline, () => client.connection.operatorService.listSearchAttributes({ namespace: config.temporal.namespace }));
        const missing = SEARCH_ATTRIBUTES.filter((k) => !(k.name in (attrs.customAttributes ?? {}))).map((k) => k.name);
        if (missing.length) throw new Error(`search attributes missing: ${missing.join(', ')} (the worker registers them at start)`);
        return `${config.temporal.address}, namespace ${config.temporal.namespace}, search attributes registered`;
      } finally {
        await client.connection.close();
      }
    },
  },
  {
    name: 'PostgreSQL',
    async run(config) {
      if (!config.database.url) throw new Error('DATABASE_URL is not set (npm start runs an embedded PostgreSQL and prints nothing to set for it; set it to check another)');
      const pool = createPool(config.database.url, 1);
      try {
        const version = (await pool.query('SHOW server_version')).rows[0].server_version as string;
        const files = readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith('.sql')).length;
        const applied = await pool.query('SELECT count(*)::int AS n FROM pgmigrations').then((r) => r.rows[0].n as number, () => 0);
        if (applied < files) throw new Error(`${files - applied} migration(s) not applied yet (they apply when the API or worker starts)`);
        return `server ${version}, ${applied} migrations applied`;
      } finally {
        await pool.end();
      }
    },
  },
  {
    name: 'Google (Gmail, Calendar)',
    async run(config) {
      const cfg = config.providers.google;
      const auth = createGoogleAuth(cfg, { timeoutMs: TIMEOUT_MS });
      await auth.getAccessToken();
      const calendar = createCalendar(cfg, { auth, timeoutMs: TIMEOUT_MS });
      const now = new Date();
      await calendar.freebusy.query({ requestBody: { timeMin: now.toISOString(), timeMax: new Date(+now + 3600_000).toISOString(), items: [{ id: config.outreach.senderEmail }] } });
      return `${cfg.mode} (${cfg.baseUrl}), token refreshed, free/busy answered`;
    },
  },
  {
    name: 'HubSpot',
    async run(config) {
      const cfg = config.providers.hubspot;
      const owners = await createHubspot(cfg).crm.owners.ownersApi.getPage(undefined, undefined, 1);
      return `${cfg.mode} (${cfg.baseUrl}), ${owners.results.length ? 'owners readable' : 'no owners'}`;
    },
  },
  {
    name: 'OpenAI',
    async run(config) {
      const cfg = config.providers.openai;
      const models = await createOpenAI(cfg, { timeoutMs: TIMEOUT_MS }).models.list();
      const ids = models.data.map((m) => m.id);
      if (!ids.includes(cfg.model)) throw new Error(`model ${cfg.model} is not available to this key`);
      return `${cfg.mode} (${cfg.baseUrl}), model ${cfg.model} available`;
    },
  },
  {
    name: 'Slack',
    async run(config) {
      const cfg = config.providers.slack;
      const auth = await createSlack(cfg, { timeout: TIMEOUT_MS }).auth.test();
      return `${cfg.mode} (${cfg.baseUrl}), bot ${auth.user ?? auth.user_id ?? 'ok'}`;
    },
  },
  {
    name: 'X API',
    async run(config) {
      const cfg = config.providers.x;
      const page = await searchRecent(createX(cfg, { timeoutMs: TIMEOUT_MS }), { query: 'prospector -is:retweet', maxResults: 10 });
      return `${cfg.mode} (${cfg.baseUrl}), search answered; ${page.rateLimit ? `${page.rateLimit.remaining}/${page.rateLimit.limit} requests left` : 'no rate-limit headers'}`;
    },
  },
];

export function register(program: Command, ctx: CliContext): void {
  program
    .command('doctor')
    .description('check the configuration and reach every dependency')
    .option('--json', 'print the results as JSON')
    .action(async (opts: { json?: boolean }) => {
      let config: Config;
      try {
        config = await ctx.getConfig();
      } catch (err) {
        if (err instanceof ConfigError) throw new CliError(err.message, 78);
        throw err;
      }
      const results = await Promise.all(
        checks.map(async (check) => {
          try {
            const detail = await Promise.race([
              check.run(config),
              new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${TIMEOUT_MS * 2} ms`)), TIMEOUT_MS * 2).unref()),
            ]);
            return { name: check.name, ok: true, detail };
          } catch (err) {
            return { name: check.name, ok: false, detail: describe(err) };
          }
        }),
      );
      if (opts.json) console.log(JSON.stringify({ ok: results.every((r) => r.ok), checks: results }, null, 2));
      else {
        console.log(`config ok (${config.env}, data in ${config.dataDir})`);
        for (const r of results) console.log(`${r.ok ? 'ok  ' : 'FAIL'}  ${r.name.padEnd(26)} ${r.detail}`);
      }
      if (!results.every((r) => r.ok)) process.exitCode = 1;
    });
}

function describe(err: unknown): string {
  const e = err as { message?: string; code?: string | number; status?: number };
  return [e.status ?? e.code, e.message].filter(Boolean).join(' ') || String(err);
}
