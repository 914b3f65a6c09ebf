import type { Client } from '@temporalio/client';
import type { Pool } from '../lib/store/db.js';

export interface DependencyCheck {
  name: string;
  /** Label used in messages, e.g. "PostgreSQL". */
  label: string;
  check(signal: AbortSignal): Promise<void>;
}

export interface CheckResult {
  ok: boolean;
  latencyMs: number;
  error?: string;
}

/** Runs every check in parallel, each bounded by the timeout, so /readyz answers quickly even when a dependency hangs. */
export async function checkDependencies(checks: DependencyCheck[], timeoutMs = 2_000): Promise<Record<string, CheckResult & { label: string }>> {
  const results = await Promise.all(
    checks.map(async (c) => {
      const started = performance.now();
      const controller = new AbortController();
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          c.check(controller.signal),
          new Promise((_, reject) => {
            timer = setTimeout(() => {
              controller.abort();
              reject(new Error(`no answer within ${timeoutMs} ms`));
            }, timeoutMs);
          }),
        ]);
        return [c.name, { label: c.label, ok: true, latencyMs: Math.round(performance.now() - started) }] as const;
      } catch (err) {
        return [c.name, { label: c.label, ok: false, latencyMs: Math.round(performance.now() - started), error: (err as Error).message || String(err) }] as const;
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return Object.fromEntries(results);
}

export function postgresCheck(pool: Pool): DependencyCheck {
  return {
    name: 'postgres',
    label: 'PostgreSQL',
    async check() {
      await pool.query('SELECT 1');
    },
  };
}

export function temporalCheck(client: Client, namespace: string): DependencyCheck {
  return {
    name: 'temporal',
    label: 'Temporal',
    async check() {
      // A deadline (not an abort) ends the call inside gRPC, so the SDK's retry loop stops too.
      await client.connection.withDeadline(Date.now() + 1_500, () => client.connection.workflowService.describeNamespace({ namespace }));
    },
  };
}
