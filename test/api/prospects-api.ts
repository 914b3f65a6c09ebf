import type { Server } from 'node:http';
import type { Client } from '@temporalio/client';
import { createApp } from '../../api/app.js';
import type { IntakeApiDeps } from '../../api/routes/prospects.js';
import { allRoutes } from '../../api/routes/index.js';
import { createSecurity } from '../../api/security/index.js';
import type { ContractViolation } from '../../api/security/contract.js';
import type { Scope } from '../../api/route.js';
import { ApiKeyStore } from '../../lib/api-keys.js';
import type { Config } from '../../lib/config.js';
import type { Pool } from '../../lib/db.js';
import { createLogger } from '../../lib/logger.js';
import { loadSecurityConfig } from '../../lib/security-config.js';

/**
 * The API as production assembles it (security middleware, all routes),
 * starting intakes on a task queue of the test's own, with the response
 * contract check on and rate limits off (tests poll).
 */
export interface ProspectsApi {
  url: string;
  violations: ContractViolation[];
  key(scopes: Scope[]): Promise<string>;
  call<T = any>(method: string, path: string, options?: { key?: string; body?: unknown; headers?: Record<string, string>; raw?: string }): Promise<{ status: number; body: T; headers: Headers }>;
  close(): Promise<void>;
}

export async function startProspectsApi(o: { config: Config; pool: Pool; temporal: Client; taskQueue: string }): Promise<ProspectsApi> {
  const log = createLogger({ name: 'api-test', level: 'silent' });
  const deps: IntakeApiDeps = { config: o.config, pool: o.pool, temporal: o.temporal, log, intakeTaskQueue: o.taskQueue };
  const settings = await loadSecurityConfig({ env: {}, overrides: { PROSPECTOR_ENV: o.config.env, RATE_LIMIT_DEFAULT: 'off', RATE_LIMIT_KEY: 'off', RATE_LIMIT_ANONYMOUS: 'off' } });
  const violations: ContractViolation[] = [];
  const security = await createSecurity(deps, { settings, onContractViolation: (v) => violations.push(v) });
  const app = createApp({ ...deps, routes: allRoutes(deps), routeMiddleware: security.middleware, checks: security.checks, extras: security.extras });
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const store = ApiKeyStore.fromSecurity(o.pool, settings);
  return {
    url,
    violations,
    async key(scopes) {
      return (await store.create({ name: `test ${scopes.join(' ')}`, scopes, actor: 'test' })).plaintext;
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
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await security.close();
    },
  };
}
