import v8 from 'node:v8';
import { Runtime, makeTelemetryFilterString } from '@temporalio/worker';
import { createActivities } from '../activities/index.js';
import { loadConfigOrExit } from '../lib/config/config.js';
import { createPool, migrate } from '../lib/store/db.js';
import { createLogger, temporalLogger } from '../lib/config/logger.js';
import { reportReady } from '../lib/config/ready.js';
import { ensureHarvestSchedule } from '../api/services/harvest-schedule.js';
import { connectClient, connectWorker, ensureSearchAttributes, payloadCodecFor, warnIfInsecure } from '../lib/config/temporal.js';
import { resolveDatabaseUrl } from '../lib/config/database-url.js';
import { createWorkers, runWorkers } from './worker.js';

// Wiring only: configuration, connections, telemetry, then run until a signal.
const config = await loadConfigOrExit();
const log = createLogger({ name: 'worker', level: config.logLevel });
warnIfInsecure(config, log);
// The heap bound is a start flag (the dev supervisor and compose pass it); a worker started without it says so.
const heapMb = Math.round(v8.getHeapStatistics().heap_size_limit / 2 ** 20);
if (heapMb > config.worker.maxHeapMb + 64) {
  log.error(
    { heapMb, maxHeapMb: config.worker.maxHeapMb },
    `worker heap is not bounded by WORKER_MAX_HEAP: start it with node --max-old-space-size=${config.worker.maxHeapMb} (or NODE_OPTIONS)`,
  );
}
const servesHarvest = config.worker.taskQueues.includes(config.harvest.taskQueue);

Runtime.install({
  logger: temporalLogger(log),
  telemetryOptions: {
    logging: { filter: makeTelemetryFilterString({ core: 'WARN' }), forward: {} },
    metrics: config.worker.metricsPort > 0 ? { prometheus: { bindAddress: `0.0.0.0:${config.worker.metricsPort}` } } : undefined,
  },
});

const databaseUrl = resolveDatabaseUrl(config);
await migrate(databaseUrl, log);
const pool = createPool(databaseUrl, config.database.poolMax);

const client = await connectClient(config.temporal);
await ensureSearchAttributes(client, config.temporal.namespace, log);
if (servesHarvest) await ensureHarvestSchedule(client, { harvest: config.harvest, log });
const connection = await connectWorker(config.temporal);

const workers = await createWorkers({
  connection,
  namespace: config.temporal.namespace,
  activities: createActivities({ config, pool, log }),
  shutdownGraceMs: config.worker.shutdownGraceMs,
  taskQueues: config.worker.taskQueues,
  payloadCodec: payloadCodecFor(config.temporal),
  prebuilt: process.env.NODE_ENV === 'production',
  log,
});

// Under the dev supervisor an IPC channel exists: when it closes, the parent is gone.
process.on('disconnect', () => workers.forEach((w) => w.shutdown()));

reportReady({ taskQueues: workers.map((w) => w.options.taskQueue) });
log.info({ taskQueues: workers.map((w) => w.options.taskQueue), metricsPort: config.worker.metricsPort, heapMb }, 'worker running');
await runWorkers(workers);
await pool.end();
await connection.close();
await client.connection.close();
log.info('worker stopped');
// The native runtime can keep the event loop alive after shutdown; we are done.
process.exit(0);
