import { existsSync } from 'node:fs';
import path from 'node:path';
import { bundleWorkflowCode, NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import type { PayloadCodec } from '@temporalio/common';
import type { Logger } from '../lib/config/logger.js';
import { temporalLogger } from '../lib/config/logger.js';
import type { Activities } from '../activities/index.js';
import { COMPILED, ROOT } from '../lib/config/paths.js';
import { TASK_QUEUES } from '../lib/domain/search-attributes.js';

/** Workflow source for development; production loads the prebuilt bundle. */
export const WORKFLOWS_PATH = COMPILED ? path.join(ROOT, 'dist/workflows/index.js') : path.join(ROOT, 'workflows/index.ts');
export const WORKFLOW_BUNDLE_PATH = process.env.WORKFLOW_BUNDLE_PATH ?? path.join(ROOT, 'dist/workflow-bundle.js');

export interface WorkerSetup {
  connection: NativeConnection;
  namespace: string;
  activities: Activities;
  shutdownGraceMs: number;
  /** Encrypts every payload the worker writes and decrypts what it reads (lib/config/temporal.ts payloadCodecFor). */
  payloadCodec: PayloadCodec;
  /** Defaults to both queues; tests pass their own names. */
  taskQueues?: string[];
  /** Use the prebuilt bundle (production start). */
  prebuilt?: boolean;
  /** A prebuilt bundle at this path (implies prebuilt). */
  bundlePath?: string;
  options?: Partial<WorkerOptions>;
  log?: Logger;
}

/**
 * How long one workflow activation may run before the SDK stops it as a
 * deadlock. The SDK records a stack trace for every promise a workflow makes,
 * which costs about half a millisecond per signal, and a flood of signals
 * arrives as one activation (and as one on every replay): a 10,000-signal
 * activation took 5 s here. Stopping an activation mid-way also takes the
 * whole Node process down (its async-hook stack is left corrupted), so the
 * limit sits above what a run within Temporal's 51,200-event history limit
 * can need, not at the SDK's 5 s.
 */
const ISOLATE_EXECUTION_TIMEOUT = '60s';

/**
 * The SDK reads the option from the worker options (worker-options.js,
 * pinned SDK 1.24.0) but leaves it out of their type.
 */
export const isolateTimeout = { isolateExecutionTimeout: ISOLATE_EXECUTION_TIMEOUT } as Partial<WorkerOptions>;

/** One Worker per task queue, sharing a connection and the activity instances. */
export async function createWorkers(setup: WorkerSetup): Promise<Worker[]> {
  const queues = setup.taskQueues ?? Object.values(TASK_QUEUES);
  const bundlePath = setup.bundlePath ?? (setup.prebuilt ? WORKFLOW_BUNDLE_PATH : undefined);
  if (bundlePath && !existsSync(bundlePath)) {
    throw new Error(`prebuilt workflow bundle missing at ${bundlePath}: run npm run build`);
  }
  // Bundle once for all queues (webpack is the slow part of a dev start).
  const workflowBundle = bundlePath
    ? { codePath: bundlePath }
    : await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: setup.log ? quiet(setup.log) : undefined });
  return Promise.all(
    queues.map((taskQueue) =>
      Worker.create({
        connection: setup.connection,
        namespace: setup.namespace,
        taskQueue,
        activities: setup.activities,
        shutdownGraceTime: setup.shutdownGraceMs,
        workflowBundle,
        dataConverter: { payloadCodecs: [setup.payloadCodec] },
        ...isolateTimeout,
        ...setup.options,
      }),
    ),
  );
}

/** Runs workers until every one has shut down (Temporal handles SIGINT/SIGTERM). */
export async function runWorkers(workers: Worker[]): Promise<void> {
  await Promise.all(workers.map((w) => w.run()));
}

/** Webpack's build report is noise at info level; keep it at debug. */
function quiet(log: Logger) {
  const base = temporalLogger(log);
  return { ...base, info: base.debug };
}
