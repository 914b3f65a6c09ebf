import os from 'node:os';
import type { Command } from 'commander';
import ms from 'ms';
import { ApiKeyError, ApiKeyStore, statusOf, type ApiKey } from '../../lib/store/api-keys.js';
import { SCOPES } from '../../api/route.js';
import { CliError, type CliContext } from '../context.js';

/**
 * `prospector keys …` works directly against the database (DATABASE_URL, or the
 * running dev stack's), so the first admin key can be made before any key
 * exists, and a lost admin key can be replaced without the API.
 */
export function register(program: Command, ctx: CliContext): void {
  const keys = program.command('keys').description('API keys: create, list, rotate, revoke (directly in the database)');

  keys
    .command('create')
    .description('Create an API key; it is printed once and never stored in plain text')
    .requiredOption('-n, --name <name>', 'who or what the key is for, e.g. "hubspot-sync"')
    .option('-i, --identity <email>', "the person the key belongs to; decisions made with it are theirs (see `prospector approvers`). Without it: a service key")
    .requiredOption('-s, --scopes <scopes>', `comma-separated: ${SCOPES.join(', ')}`)
    .option('-e, --expires-in <duration>', 'lifetime, e.g. 90d (default: no expiry)')
    .option('-r, --rate-limit <limit>', 'requests per window across routes for this key, e.g. 5000/1m')
    .option('--json', 'print JSON')
    .action(async (opts: { name: string; identity?: string; scopes: string; expiresIn?: string; rateLimit?: string; json?: boolean }) => {
      const store = await keyStore(ctx);
      const expiresAt = opts.expiresIn ? new Date(Date.now() + durationMs(opts.expiresIn, '--expires-in')) : null;
      const { key, plaintext } = await run(() =>
        store.create({ name: opts.name, identity: opts.identity, scopes: opts.scopes.split(','), expiresAt, rateLimit: opts.rateLimit ?? null, actor: actor() }),
      );
      if (opts.json) return print(JSON.stringify({ ...key, status: statusOf(key, new Date()), key: plaintext }, null, 2));
      print(plaintext);
      note(`Created ${key.id} (${key.name}, for ${key.identity}; scopes ${key.scopes.join(', ')}${key.expiresAt ? `; expires ${key.expiresAt.toISOString()}` : ''}).`);
      note('This is the only time the key is shown: store it now.');
    });

  keys
    .command('list')
    .description('List keys (never their secrets)')
    .option('-a, --all', 'include revoked keys')
    .option('--json', 'print JSON')
    .action(async (opts: { all?: boolean; json?: boolean }) => {
      const store = await keyStore(ctx);
      const list = await run(() => store.list({ includeRevoked: opts.all }));
      const now = new Date();
      if (opts.json) return print(JSON.stringify(list.map((k) => ({ ...k, status: statusOf(k, now) })), null, 2));
      if (list.length === 0) return note('No API keys. Create one: prospector keys create --name <name> --scopes admin');
      print(table(list, now));
    });

  keys
    .command('rotate <key>')
    .description('Issue a successor key; the old one keeps working for the overlap')
    .option('-o, --overlap <duration>', 'how long the old key keeps working, e.g. 24h or 0s (default API_KEY_ROTATION_OVERLAP, 24h)')
    .option('--json', 'print JSON')
    .action(async (ref: string, opts: { overlap?: string; json?: boolean }) => {
      const store = await keyStore(ctx);
      const overlapMs = opts.overlap === undefined ? undefined : durationMs(opts.overlap, '--overlap');
      const { key, plaintext, previous } = await run(() => store.rotate(ref, { overlapMs, actor: actor() }));
      if (opts.json) return print(JSON.stringify({ key: { ...key, key: plaintext }, previous }, null, 2));
      print(plaintext);
      note(`Created ${key.id}, replacing ${previous.id}, which stops working at ${previous.expiresAt?.toISOString()}.`);
      note('This is the only time the new key is shown: store it now.');
    });

  keys
    .command('revoke <key>')
    .description('Revoke a key now (every API replica rejects it within a second)')
    .option('--reason <text>', 'why, for the audit trail')
    .option('--json', 'print JSON')
    .action(async (ref: string, opts: { reason?: string; json?: boolean }) => {
      const store = await keyStore(ctx);
      const key = await run(() => store.revoke(ref, { actor: actor(), reason: opts.reason }));
      if (opts.json) return print(JSON.stringify(key, null, 2));
      print(`Revoked ${key.id} (${key.name}) at ${key.revokedAt?.toISOString()}.`);
    });
}

async function keyStore(ctx: CliContext): Promise<ApiKeyStore> {
  const config = await ctx.getConfig();
  return ApiKeyStore.fromSecurity(await ctx.getPool(), config.security);
}

async function run<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof ApiKeyError) throw new CliError(err.message, err.code === 'not_found' ? 4 : 2);
    if ((err as { code?: string }).code === '42P01') {
      throw new CliError('the database has no api_keys table yet: start the API or worker once (they apply migrations), or run `npm start`');
    }
    throw err;
  }
}

function durationMs(text: string, option: string): number {
  const value = ms(text as ms.StringValue);
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new CliError(`${option}: expected a duration such as 90d, 24h or 0s, got "${text}"`, 2);
  return value;
}

function actor(): string {
  try {
    return `cli:${os.userInfo().username}`;
  } catch {
    return 'cli';
  }
}

function table(list: ApiKey[], now: Date): string {
  const rows = list.map((k) => [
    k.id,
    k.name,
    k.identity,
    statusOf(k, now),
    k.scopes.join(','),
    k.expiresAt ? k.expiresAt.toISOString().slice(0, 16).replace('T', ' ') : '-',
    k.lastUsedAt ? `${ms(Math.max(0, now.getTime() - k.lastUsedAt.getTime()))} ago` : 'never',
  ]);
  const header = ['ID', 'NAME', 'IDENTITY', 'STATUS', 'SCOPES', 'EXPIRES (UTC)', 'LAST USED'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** Human notes go to stderr, so `KEY=$(prospector keys create …)` captures only the key. */
function note(text: string): void {
  process.stderr.write(`${text}\n`);
}
