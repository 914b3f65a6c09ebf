import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type Worker } from '@temporalio/worker';
import { createWorkers, type WorkerSetup } from '../../workers/worker.js';
import { createPool, migrate, type Pool } from '../../lib/store/db.js';
import { allProviders } from '../../sandbox/providers/index.js';
import { startSandbox, type Sandbox } from '../../sandbox/server.js';
import { SandboxClient } from '../../sandbox/client.js';
import { testDataConverter, testPayloadCodec } from './payload-keys.js';

/** A fresh, migrated database of its own for one test file. */
export async function testDatabase(): Promise<{ url: string; pool: Pool; drop(): Promise<void> }> {
  const base = inject('databaseUrl');
  const name = `t_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = withDatabase(base, name);
  await migrate(url);
  const pool = createPool(url, 5);
  return {
    url,
    pool,
    async drop() {
      await pool.end();
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/** A sandbox of its own (in this process, on a free port). */
export async function testSandbox(): Promise<{ sandbox: Sandbox; client: SandboxClient }> {
  const sandbox = await startSandbox({ providers: allProviders });
  return { sandbox, client: new SandboxClient(sandbox.url) };
}

let runtimeInstalled = false;
/**
 * Installs the Temporal runtime once per test process with a quieter logger: SDK logs at WARN
 * (state changes of every test worker are noise), or 'ERROR' where retried failures are expected.
 */
export function quietTemporalRuntime(level: 'WARN' | 'ERROR' = 'WARN'): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  try {
    Runtime.install({ logger: new DefaultLogger(level) });
  } catch {
    /* already installed by this process */
  }
}

export async function testTemporal(): Promise<{ client: Client; nativeConnection: NativeConnection; address: string; close(): Promise<void> }> {
  quietTemporalRuntime();
  const address = inject('temporalAddress');
  const connection = await Connection.connect({ address });
  const nativeConnection = await NativeConnection.connect({ address });
  return {
    // Payloads encrypted as in production, with the committed test fixture key.
    client: new Client({ connection, dataConverter: testDataConverter() }),
    nativeConnection,
    address,
    async close() {
      await connection.close();
      await nativeConnection.close();
    },
  };
}

export function uniqueTaskQueue(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/** A worker for one task queue on the test server, already running; `stop()` shuts it down and waits for it. */
export async function testWorker(
  temporal: { nativeConnection: NativeConnection },
  activities: WorkerSetup['activities'],
  taskQueue: string,
): Promise<{ worker: Worker; running: Promise<void>; stop(): Promise<void> }> {
  const [worker] = await createWorkers({
    connection: temporal.nativeConnection,
    namespace: 'default',
    activities,
    shutdownGraceMs: 1_000,
    payloadCodec: testPayloadCodec(),
    taskQueues: [taskQueue],
  });
  const running = worker!.run();
  return {
    worker: worker!,
    running,
    async stop() {
      worker!.shutdown();
      await running;
    },
  };
}
