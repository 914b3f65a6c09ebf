import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import getPort from 'get-port';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres, type EmbeddedDb } from '../../infra/postgres-dev.js';
import { findTemporalCli, startTemporalDevServer, type DevServer } from '../../infra/temporal-dev.js';
import { missingPrerequisites } from './prerequisites.js';

/**
 * One real Temporal dev server and one real PostgreSQL for the whole run.
 * Test files isolate themselves: their own database, sandbox and task queues.
 * TEST_TEMPORAL_ADDRESS / TEST_DATABASE_URL reuse servers that already run.
 */
declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    temporalBinary: string;
    databaseUrl: string;
  }
}

let temporal: DevServer | undefined;
let postgres: EmbeddedDb | undefined;
let tmp: string | undefined;

export async function setup(project: TestProject) {
  // Before the Temporal CLI build and the servers: a missing program stops the run here, by name.
  // Not thrown: vitest would print a failed global setup under "No test files found", a false lead.
  const missing = missingPrerequisites();
  if (missing) {
    process.stderr.write(`\n${missing}\n\n`);
    process.exit(1);
  }
  const binary = await findTemporalCli({ onProgress: (m) => console.log(m) });
  tmp = mkdtempSync(path.join(os.tmpdir(), 'prospector-test-'));
  chmodSync(tmp, 0o755); // the postgres OS user must reach its data directory
  const started = Promise.all([
    process.env.TEST_TEMPORAL_ADDRESS ??
      getPort().then(async (port) => {
        temporal = await startTemporalDevServer({ binary, port, headless: true, logLevel: 'error' });
        return temporal.address;
      }),
    process.env.TEST_DATABASE_URL ??
      getPort().then(async (port) => {
        postgres = await startEmbeddedPostgres({ dataDir: path.join(tmp!, 'pg'), port, ephemeral: true, database: 'postgres' });
        return postgres.url;
      }),
  ]);
  const [temporalAddress, databaseUrl] = await started.catch(async (err) => {
    await teardown();
    throw err;
  });
  project.provide('temporalAddress', temporalAddress);
  project.provide('temporalBinary', binary);
  project.provide('databaseUrl', databaseUrl);
}

export async function teardown() {
  await Promise.allSettled([temporal?.stop(), postgres?.stop()]);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}
