import type { Server } from 'node:http';
import type { Client } from '@temporalio/client';
import type { IntakeDispatcher, IntakeDispatcherOptions } from '../../api/services/intake-dispatcher.js';
import type { IntakeApiDeps } from '../../api/services/submissions.js';
import type { ContractViolation } from '../../api/security/contract.js';
import type { PruneResult } from '../../api/security/index.js';
import { buildApi } from '../../api/server.js';
import type { Scope } from '../../api/route.js';
import { ApiKeyStore } from '../../lib/store/api-keys.js';
import type { Config } from '../../lib/config/config.js';
import type { Pool } from '../../lib/store/db.js';
import { createLogger } from '../../lib/config/logger.js';
import { loadSecurityConfig } from '../../lib/config/security.js';

/**
 * The API as production assembles it (buildApi: security middleware, all
 * routes, the intake dispatcher), starting intakes on a task queue of the
 * test's own, with the response contract check on and rate limits off (tests poll).
 */
export interface ProspectsApi {
  url: string;
  violations: ContractViolation[];
  dispatcher: IntakeDispatcher | undefined;
  /** The run a submission was dispatched to, once the dispatcher started (or joined) it. */
  runOf(submissionId: string, timeoutMs?: number): Promise<{ workflowId: string; runId: string; outcome: 'started' | 'attached' }>;
  /** A key with these scopes; with an identity, it acts for that person (register them as an approver to decide). */
  key(scopes: Scope[], identity?: string): Promise<string>;
  call<T = any>(method: string, path: string, options?: { key?: string; body?: unknown; headers?: Record<string, string>; raw?: string }): Promise<{ status: number; body: T; headers: Headers }>;
  /** One round of the API's periodic pruning, now. */
  prune(): Promise<PruneResult>;
  close(): Promise<void>;
}

export interface ProspectsApiOptions {
  config: Config;
  pool: Pool;
  temporal: Client;
  taskQueue: string;
  /** Dispatcher settings (tests shorten back-offs); false runs none. */
  dispatcher?: Partial<IntakeDispatcherOptions> | false;
}

export async function startProspectsApi(o: ProspectsApiOptions): Promise<ProspectsApi> {
  const log = createLogger({ name: 'api-test', level: 'silent' });
  const deps: IntakeApiDeps = { config: o.config, pool: o.pool, temporal: o.temporal, log, intakeTaskQueue: o.taskQueue };
  const settings = await loadSecurityConfig({ env: {}, overrides: { PROSPECTOR_ENV: o.config.env, RATE_LIMIT_DEFAULT: 'off', RATE_LIMIT_KEY: 'off', RATE_LIMIT_ANONYMOUS: 'off' } });
  const violations: ContractViolation[] = [];
  const api = await buildApi(deps, { security: { settings, onContractViolation: (v) => violations.push(v) }, dispatcher: o.dispatcher });
  const server = await new Promise<Server>((resolve) => {
    const s = api.app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const store = ApiKeyStore.fromSecurity(o.pool, settings);
  return {
    url,
    violations,
    dispatcher: api.dispatcher,
    async runOf(submissionId, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const { rows } = await o.pool.query('SELECT workflow_id, run_id, outcome, last_error FROM intake_submissions WHERE id = $1', [submissionId]);
        if (rows[0]?.run_id) return { workflowId: rows[0].workflow_id, runId: rows[0].run_id, outcome: rows[0].outcome };
        if (Date.now() > deadline) throw new Error(`submission ${submissionId} not dispatched after ${timeoutMs} ms (${rows[0]?.last_error ?? 'no error recorded'})`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async key(scopes, identity) {
      return (await store.create({ name: `test ${scopes.join(' ')}`, identity, scopes, actor: 'test' })).plaintext;
    },
    async call(method, path, options = {}) {
      const res = await fetch(`${url}${path}`, {
        method,
        headers: {
          ...(options.key ? { authorization: `Bearer ${options.key}` } : {}),
          ...(options.body !== undefined || options.raw !== undefined ? { 'content-type': 'application/json' } : {}),
          ...options.headers,
        },
        body: options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body)),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
    },
    prune: () => api.security.prune(),
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await api.close();
    },
  };
}
