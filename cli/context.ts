import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { loadConfig, type Config } from '../lib/config/config.js';
import { createPool, type Pool } from '../lib/store/db.js';
import { connectClient } from '../lib/config/temporal.js';

/**
 * What commands need, made on first use and closed once at the end, so a
 * command that only calls the API never opens a database connection.
 */
export class CliContext {
  private config?: Promise<Config>;
  private pool?: Pool;
  private temporal?: Promise<Client>;

  /**
   * Config from the environment; when DATABASE_URL is unset and a dev stack
   * runs (`npm start` writes DATA_DIR/stack.json), its database is used.
   */
  getConfig(): Promise<Config> {
    return (this.config ??= loadConfig({ overrides: { DATABASE_URL: process.env.DATABASE_URL ? undefined : devStack()?.databaseUrl } }));
  }

  async getPool(): Promise<Pool> {
    const config = await this.getConfig();
    if (!config.database.url) {
      throw new CliError('DATABASE_URL is not set. For the dev stack use the URL `npm start` prints, or set DATABASE_URL.');
    }
    return (this.pool ??= createPool(config.database.url, 2));
  }

  async getTemporal(): Promise<Client> {
    return (this.temporal ??= this.getConfig().then((c) => connectClient(c.temporal)));
  }

  /** Base URL and key for API calls: env first, then the dev stack's key file. */
  async apiTarget(): Promise<{ url: string; key?: string }> {
    const config = await this.getConfig();
    const url = (process.env.PROSPECTOR_API_URL ?? `http://127.0.0.1:${config.api.port}`).replace(/\/$/, '');
    const keyFile = path.join(config.dataDir, 'dev-api-key');
    const key = process.env.PROSPECTOR_API_KEY ?? (existsSync(keyFile) ? readFileSync(keyFile, 'utf8').trim() : undefined);
    return { url, key };
  }

  /** Calls the API; a problem+json answer becomes a CliError with its detail. */
  async api<T = unknown>(method: string, route: string, body?: unknown): Promise<T> {
    const { url, key } = await this.apiTarget();
    let res: Response;
    try {
      res = await fetch(`${url}${route}`, {
        method,
        headers: {
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...(key ? { authorization: `Bearer ${key}` } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new CliError(`cannot reach the API at ${url} (${(err as Error).message}); is it running (npm start)?`);
    }
    const text = await res.text();
    const data = text ? safeJson(text) : undefined;
    if (!res.ok) {
      const problem = data as { title?: string; detail?: string } | undefined;
      throw new CliError(`${res.status} ${problem?.title ?? res.statusText}: ${problem?.detail ?? text}`);
    }
    return data as T;
  }

  async close(): Promise<void> {
    await this.pool?.end();
    if (this.temporal) await (await this.temporal).connection.close();
  }
}

/** An error the user can act on: printed without a stack trace. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'CliError';
  }
}

function devStack(): { databaseUrl?: string; apiUrl?: string } | undefined {
  const file = path.join(path.resolve(process.env.DATA_DIR ?? '.data'), 'stack.json');
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
