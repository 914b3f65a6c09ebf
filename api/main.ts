import type { Server } from 'node:http';
import { Client, Connection } from '@temporalio/client';
import { loadConfigOrExit } from '../lib/config/config.js';
import { resolveDatabaseUrl } from '../lib/config/database-url.js';
import { createPool, migrate } from '../lib/store/db.js';
import { createLogger } from '../lib/config/logger.js';
import { dataConverterFor, tlsOptions, warnIfInsecure } from '../lib/config/temporal.js';
import { reportReady } from '../lib/config/ready.js';
import { buildApi } from './server.js';

// Wiring only. The API starts even when Temporal is not up yet (lazy
// connection); /readyz says what is missing.
const config = await loadConfigOrExit();
const log = createLogger({ name: 'api', level: config.logLevel });
warnIfInsecure(config, log);
const databaseUrl = resolveDatabaseUrl(config);
await migrate(databaseUrl, log);
const pool = createPool(databaseUrl, config.database.poolMax);

const connection = Connection.lazy({ address: config.temporal.address, tls: await tlsOptions(config.temporal), apiKey: config.temporal.apiKey });
const temporal = new Client({ connection, namespace: config.temporal.namespace, dataConverter: dataConverterFor(config.temporal) });

const api = await buildApi({ config, pool, temporal, log });
const app = api.app;
const server: Server = app.listen(config.api.port, () => {
  log.info({ port: config.api.port }, 'api listening');
  reportReady({ port: config.api.port });
});
server.keepAliveTimeout = 65_000;

let stopping = false;
async function shutdown(reason: string) {
  if (stopping) return;
  stopping = true;
  log.info({ reason }, 'api stopping');
  // Finish in-flight requests first (bounded), then flush what they queued (audit rows), then disconnect.
  const closed = new Promise((resolve) => server.close(resolve));
  server.closeIdleConnections();
  await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 10_000).unref())]);
  server.closeAllConnections();
  await api.close().catch((err) => log.error({ err: (err as Error).message }, 'flushing on shutdown failed'));
  await Promise.allSettled([pool.end(), connection.close()]);
  log.info('api stopped');
  process.exit(0);
}
process.once('SIGINT', () => void shutdown('SIGINT'));
process.once('SIGTERM', () => void shutdown('SIGTERM'));
// Under the dev supervisor: the IPC channel closing means the parent is gone.
process.on('disconnect', () => void shutdown('parent exited'));
