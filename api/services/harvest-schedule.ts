import { ScheduleAlreadyRunning, ScheduleNotFoundError, type Client, type ScheduleDescription } from '@temporalio/client';
import { loadHarvestConfig, type HarvestConfig } from '../../lib/config/harvest.js';
import type { Logger } from '../../lib/config/logger.js';
import type { HarvestInput } from '../../lib/domain/harvest.js';
import { HARVEST_WORKFLOW } from '../../workflows/harvest/messages.js';

/**
 * The harvest's Temporal Schedule: created idempotently (worker start or
 * `ensureHarvestSchedule`), every 15 minutes by default, overlap SKIP, and
 * controlled from the API and the CLI (pause, resume, trigger, backfill,
 * interval). One module so every caller means the same schedule.
 */


export type OverlapPolicy = 'SKIP' | 'BUFFER_ONE' | 'BUFFER_ALL' | 'CANCEL_OTHER' | 'TERMINATE_OTHER' | 'ALLOW_ALL';
export const OVERLAP_POLICIES: OverlapPolicy[] = ['SKIP', 'BUFFER_ONE', 'BUFFER_ALL', 'CANCEL_OTHER', 'TERMINATE_OTHER', 'ALLOW_ALL'];

export interface HarvestScheduleSettings {
  id: string;
  taskQueue: string;
  intervalMs: number;
  /** Create paused (e.g. a staging environment). */
  paused: boolean;
  /** Workflow input of every scheduled run. */
  input: HarvestInput;
}

export function scheduleSettings(cfg: HarvestConfig = loadHarvestConfig(), overrides: Partial<HarvestScheduleSettings> = {}): HarvestScheduleSettings {
  return {
    id: cfg.schedule.id,
    taskQueue: cfg.taskQueue,
    intervalMs: cfg.schedule.intervalMs,
    paused: cfg.schedule.startPaused,
    input: { trigger: 'schedule' },
    ...overrides,
  };
}

export class HarvestScheduleMissingError extends Error {
  override readonly name = 'HarvestScheduleMissingError';
}

/**
 * Creates the schedule unless it exists. An existing schedule is left as
 * operators set it (paused, another interval): creation never overrides control.
 */
export async function ensureHarvestSchedule(
  client: Client,
  options: { settings?: Partial<HarvestScheduleSettings>; harvest?: HarvestConfig; log?: Logger } = {},
): Promise<{ id: string; created: boolean; disabled?: boolean }> {
  const cfg = options.harvest ?? loadHarvestConfig();
  const s = scheduleSettings(cfg, options.settings);
  if (!cfg.schedule.enabled && !options.settings) {
    options.log?.info({ scheduleId: s.id }, 'harvest schedule disabled (HARVEST_SCHEDULE_ENABLED=false)');
    return { id: s.id, created: false, disabled: true };
  }
  try {
    await client.schedule.create({
      scheduleId: s.id,
      spec: { intervals: [{ every: s.intervalMs }] },
      action: { type: 'startWorkflow', workflowType: HARVEST_WORKFLOW, taskQueue: s.taskQueue, workflowId: `harvest-${s.id}`, args: [s.input] },
      policies: { overlap: 'SKIP', catchupWindow: '1 minute', pauseOnFailure: false },
      state: { paused: s.paused, note: s.paused ? 'created paused' : 'created by Prospector' },
    });
    options.log?.info({ scheduleId: s.id, everyMs: s.intervalMs, paused: s.paused }, 'harvest schedule created');
    return { id: s.id, created: true };
  } catch (err) {
    if (err instanceof ScheduleAlreadyRunning) return { id: s.id, created: false };
    throw err;
  }
}

export interface HarvestScheduleView {
  id: string;
  paused: boolean;
  note: string | null;
  intervalMs: number | null;
  overlap: string;
  taskQueue: string;
  workflowType: string;
  nextRuns: string[];
  recentRuns: { scheduledAt: string; takenAt: string; workflowId: string; firstRunId: string }[];
  running: { workflowId: string; firstRunId: string }[];
  actionsTaken: number;
  skippedOverlap: number;
  missedCatchup: number;
  createdAt: string;
  updatedAt: string | null;
}

export function viewOf(d: ScheduleDescription): HarvestScheduleView {
  const action = d.action as { taskQueue?: string; workflowType?: string };
  return {
    id: d.scheduleId,
    paused: d.state.paused,
    note: d.state.note ?? null,
    intervalMs: d.spec.intervals?.[0]?.every ?? null,
    overlap: String(d.policies.overlap),
    taskQueue: action.taskQueue ?? '',
    workflowType: action.workflowType ?? '',
    nextRuns: d.info.nextActionTimes.slice(0, 5).map((t) => t.toISOString()),
    recentRuns: d.info.recentActions.slice(-10).map((r) => ({
      scheduledAt: r.scheduledAt.toISOString(),
      takenAt: r.takenAt.toISOString(),
      workflowId: r.action.workflow.workflowId,
      firstRunId: r.action.workflow.firstExecutionRunId,
    })),
    running: d.info.runningActions.map((r) => ({ workflowId: r.workflow.workflowId, firstRunId: r.workflow.firstExecutionRunId })),
    actionsTaken: d.info.numActionsTaken,
    skippedOverlap: d.info.numActionsSkippedOverlap,
    missedCatchup: d.info.numActionsMissedCatchupWindow,
    createdAt: d.info.createdAt.toISOString(),
    updatedAt: d.info.lastUpdatedAt?.toISOString() ?? null,
  };
}

/** Operator controls over one schedule id. Every method answers with the schedule as it now is. */
export function harvestSchedule(client: Client, id: string = loadHarvestConfig().schedule.id) {
  // Made on use: building the API's routes must not touch the Temporal client.
  const handle = () => client.schedule.getHandle(id);
  const guard = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof ScheduleNotFoundError) throw new HarvestScheduleMissingError(`harvest schedule ${id} does not exist (the worker creates it at start; or run \`prospector harvest schedule create\`)`);
      throw err;
    }
  };
  const describe = () => guard(async () => viewOf(await handle().describe()));
  return {
    id,
    describe,
    async pause(note = 'paused by an operator') {
      await guard(() => handle().pause(note));
      return describe();
    },
    async resume(note = 'resumed by an operator') {
      await guard(() => handle().unpause(note));
      return describe();
    },
    /** Runs now; by default right after a run in progress rather than beside it. */
    async trigger(overlap: OverlapPolicy = 'BUFFER_ONE') {
      await guard(() => handle().trigger(overlap));
      return describe();
    },
    /** Takes the actions the schedule would have taken between start and end (one run per missed interval). */
    async backfill(start: Date, end: Date, overlap: OverlapPolicy = 'BUFFER_ALL') {
      if (!(start < end)) throw new RangeError('backfill start must be before its end');
      await guard(() => handle().backfill({ start, end, overlap }));
      return describe();
    },
    async setInterval(everyMs: number) {
      if (!Number.isFinite(everyMs) || everyMs < 10_000) throw new RangeError('interval must be at least 10 seconds');
      await guard(() =>
        handle().update((previous) => ({ ...previous, spec: { intervals: [{ every: everyMs }] } })),
      );
      return describe();
    },
    async delete() {
      await guard(() => handle().delete());
    },
  };
}

export type HarvestScheduleControl = ReturnType<typeof harvestSchedule>;
