import { randomUUID } from 'node:crypto';
import ms from 'ms';
import { z } from 'zod';
import { WorkflowNotFoundError } from '@temporalio/client';
import { listRuns } from '../../lib/store/signals.js';
import type { HarvestConfig } from '../../lib/config/harvest.js';
import { ensureHarvestSchedule, harvestSchedule, HarvestScheduleMissingError, OVERLAP_POLICIES, type HarvestScheduleView } from '../services/harvest-schedule.js';
import type { HarvestInput, HarvestStatus, HarvestSummary } from '../../lib/domain/harvest.js';
import type { ApiDeps } from '../deps.js';
import { problems } from '../problem.js';
import { defineRoute, type AnyRoute } from '../route.js';
import { HARVEST_WORKFLOW, harvestStatusQuery } from '../../workflows/harvest/messages.js';

/** Harvest runs (start now, list, status) and control of the harvest Schedule. Writes need harvest:write. */

const timestamp = z.iso.datetime({ offset: true });
const WRITE = { scope: 'harvest:write' } as const;
const READ = { scope: 'signals:read' } as const;
const TAGS = ['harvest'];

const interval = z
  .string()
  .max(20)
  .describe('A duration such as "15m", "1h" (at least 10s)')
  .transform((value, ctx) => {
    const parsed = ms(value as ms.StringValue);
    if (typeof parsed !== 'number' || !Number.isFinite(parsed) || parsed < 10_000) {
      ctx.addIssue({ code: 'custom', message: `expected a duration of at least 10s such as "15m", got "${value}"` });
      return z.NEVER;
    }
    return parsed;
  });

const ScheduleView = z
  .object({
    id: z.string(),
    paused: z.boolean(),
    note: z.string().nullable(),
    intervalMs: z.number().nullable(),
    overlap: z.string(),
    taskQueue: z.string(),
    workflowType: z.string(),
    nextRuns: z.array(timestamp),
    recentRuns: z.array(z.object({ scheduledAt: timestamp, takenAt: timestamp, workflowId: z.string(), firstRunId: z.string() })),
    running: z.array(z.object({ workflowId: z.string(), firstRunId: z.string() })),
    actionsTaken: z.number(),
    skippedOverlap: z.number(),
    missedCatchup: z.number(),
    createdAt: timestamp,
    updatedAt: timestamp.nullable(),
  })
  .meta({ id: 'HarvestSchedule' });

const StartedRun = z
  .object({ workflowId: z.string(), runId: z.string(), statusUrl: z.string(), temporalUiUrl: z.string() })
  .meta({ id: 'HarvestStarted' });

const RunView = z
  .object({
    workflowId: z.string(),
    runId: z.string().optional(),
    status: z.string(),
    startedAt: timestamp.nullable(),
    closedAt: timestamp.nullable(),
    progress: z.record(z.string(), z.unknown()).nullable().describe('The harvestStatus query, while running'),
    result: z.record(z.string(), z.unknown()).nullable().describe('The run summary, once completed'),
    failure: z.string().nullable(),
    temporalUiUrl: z.string(),
  })
  .meta({ id: 'HarvestRun' });

const RunRow = z.object({
  runKey: z.string(),
  workflowId: z.string(),
  trigger: z.string(),
  startedAt: timestamp,
  finishedAt: timestamp.nullable(),
  summary: z.record(z.string(), z.unknown()),
});

const overlap = z.enum(OVERLAP_POLICIES as [string, ...string[]]);

export function harvestRoutes(deps: ApiDeps): AnyRoute[] {
  return harvestRoutesWith(deps, deps.config.harvest);
}

export function harvestRoutesWith(deps: ApiDeps, harvest: HarvestConfig): AnyRoute[] {
  const schedule = harvestSchedule(deps.temporal, harvest.schedule.id);
  const uiLink = (workflowId: string) => `${deps.config.temporal.uiUrl}/namespaces/${deps.config.temporal.namespace}/workflows/${encodeURIComponent(workflowId)}`;
  const scheduleCall = async (fn: () => Promise<HarvestScheduleView>) => {
    try {
      return { status: 200, body: await fn() };
    } catch (err) {
      if (err instanceof HarvestScheduleMissingError) throw problems.notFound(err.message);
      if (err instanceof RangeError) throw problems.badRequest(err.message);
      throw err;
    }
  };

  return [
    defineRoute({
      method: 'post',
      path: '/harvests',
      operationId: 'startHarvest',
      summary: 'Run a harvest now (outside the schedule)',
      tags: TAGS,
      auth: WRITE,
      body: z.object({ queryNames: z.array(z.string().min(1)).max(50).optional().describe('Only these configured queries (default: all enabled)') }).optional(),
      responses: { 202: { description: 'Started', schema: StartedRun } },
      async handler({ body }) {
        const names = body?.queryNames;
        const known = harvest.queries.filter((q) => q.enabled !== false).map((q) => q.name);
        const unknown = names?.filter((n) => !known.includes(n)) ?? [];
        if (unknown.length) throw problems.badRequest(`unknown or disabled queries: ${unknown.join(', ')} (configured: ${known.join(', ')})`);
        const workflowId = `harvest-manual-${randomUUID()}`;
        const input: HarvestInput = { trigger: 'api', ...(names?.length ? { queryNames: names } : {}) };
        const handle = await deps.temporal.workflow.start(HARVEST_WORKFLOW, { taskQueue: harvest.taskQueue, workflowId, args: [input] });
        return {
          status: 202,
          headers: { location: `/v1/harvests/${workflowId}` },
          body: { workflowId, runId: handle.firstExecutionRunId, statusUrl: `/v1/harvests/${workflowId}`, temporalUiUrl: uiLink(workflowId) },
        };
      },
    }),
    defineRoute({
      method: 'get',
      path: '/harvests',
      operationId: 'listHarvests',
      summary: 'Recent harvest runs, newest first',
      tags: TAGS,
      auth: READ,
      query: z.object({ limit: z.coerce.number().int().min(1).max(100).default(20) }),
      responses: { 200: { description: 'Runs', schema: z.object({ items: z.array(RunRow) }) } },
      async handler({ query }) {
        return { body: { items: await listRuns(deps.pool, query.limit) } };
      },
    }),
    defineRoute({
      method: 'get',
      path: '/harvests/schedule',
      operationId: 'getHarvestSchedule',
      summary: 'The harvest schedule: state, interval, next and recent runs',
      tags: TAGS,
      auth: READ,
      responses: { 200: { description: 'Schedule', schema: ScheduleView } },
      handler: () => scheduleCall(() => schedule.describe()),
    }),
    defineRoute({
      method: 'post',
      path: '/harvests/schedule',
      operationId: 'ensureHarvestSchedule',
      summary: 'Create the harvest schedule if it does not exist (idempotent)',
      tags: TAGS,
      auth: WRITE,
      responses: { 200: { description: 'Already existed', schema: ScheduleView }, 201: { description: 'Created', schema: ScheduleView } },
      async handler() {
        const { created } = await ensureHarvestSchedule(deps.temporal, { harvest, settings: {} });
        return { status: created ? 201 : 200, body: await schedule.describe() };
      },
    }),
    defineRoute({
      method: 'patch',
      path: '/harvests/schedule',
      operationId: 'updateHarvestSchedule',
      summary: 'Change the interval and/or pause or resume the schedule',
      tags: TAGS,
      auth: WRITE,
      body: z
        .object({ interval: interval.optional(), paused: z.boolean().optional(), note: z.string().max(200).optional() })
        .refine((b) => b.interval !== undefined || b.paused !== undefined, { message: 'give interval and/or paused' }),
      responses: { 200: { description: 'Updated schedule', schema: ScheduleView } },
      handler: ({ body }) =>
        scheduleCall(async () => {
          if (body.interval !== undefined) await schedule.setInterval(body.interval);
          if (body.paused === true) await schedule.pause(body.note);
          if (body.paused === false) await schedule.resume(body.note);
          return schedule.describe();
        }),
    }),
    defineRoute({
      method: 'post',
      path: '/harvests/schedule/pause',
      operationId: 'pauseHarvestSchedule',
      summary: 'Pause the schedule (a run in progress finishes)',
      tags: TAGS,
      auth: WRITE,
      body: z.object({ note: z.string().max(200).optional() }).optional(),
      responses: { 200: { description: 'Paused schedule', schema: ScheduleView } },
      handler: ({ body }) => scheduleCall(() => schedule.pause(body?.note)),
    }),
    defineRoute({
      method: 'post',
      path: '/harvests/schedule/resume',
      operationId: 'resumeHarvestSchedule',
      summary: 'Resume a paused schedule',
      tags: TAGS,
      auth: WRITE,
      body: z.object({ note: z.string().max(200).optional() }).optional(),
      responses: { 200: { description: 'Running schedule', schema: ScheduleView } },
      handler: ({ body }) => scheduleCall(() => schedule.resume(body?.note)),
    }),
    defineRoute({
      method: 'post',
      path: '/harvests/schedule/trigger',
      operationId: 'triggerHarvestSchedule',
      summary: 'Take the scheduled action now (default: after a run in progress, BUFFER_ONE)',
      tags: TAGS,
      auth: WRITE,
      body: z.object({ overlap: overlap.optional() }).optional(),
      responses: { 200: { description: 'Schedule after the trigger', schema: ScheduleView } },
      handler: ({ body }) => scheduleCall(() => schedule.trigger(body?.overlap as never)),
    }),
    defineRoute({
      method: 'post',
      path: '/harvests/schedule/backfill',
      operationId: 'backfillHarvestSchedule',
      summary: 'Take the actions the schedule would have taken in a past time range',
      tags: TAGS,
      auth: WRITE,
      body: z
        .object({ start: timestamp, end: timestamp, overlap: overlap.optional() })
        .refine((b) => Date.parse(b.start) < Date.parse(b.end), { message: 'start must be before end', path: ['start'] })
        .refine((b) => Date.parse(b.end) - Date.parse(b.start) <= 7 * 86_400_000, { message: 'at most 7 days at a time', path: ['end'] }),
      responses: { 200: { description: 'Schedule after the backfill request', schema: ScheduleView } },
      handler: ({ body }) => scheduleCall(() => schedule.backfill(new Date(body.start), new Date(body.end), body.overlap as never)),
    }),
    defineRoute({
      method: 'get',
      path: '/harvests/:workflowId',
      operationId: 'getHarvest',
      summary: 'One harvest run: status, live progress, or its summary',
      tags: TAGS,
      auth: READ,
      params: z.object({ workflowId: z.string().min(1).max(300) }),
      responses: { 200: { description: 'Run', schema: RunView } },
      async handler({ params }) {
        const handle = deps.temporal.workflow.getHandle(params.workflowId);
        let description;
        try {
          description = await handle.describe();
        } catch (err) {
          if (err instanceof WorkflowNotFoundError) throw problems.notFound(`no harvest run ${params.workflowId}`);
          throw err;
        }
        if (description.type !== HARVEST_WORKFLOW) throw problems.notFound(`${params.workflowId} is not a harvest run`);
        const status = description.status.name;
        let progress: HarvestStatus | null = null;
        let result: HarvestSummary | null = null;
        let failure: string | null = null;
        if (status === 'RUNNING') progress = await handle.query(harvestStatusQuery).catch(() => null);
        if (status === 'COMPLETED') result = (await handle.result()) as HarvestSummary;
        if (status === 'FAILED') failure = await handle.result().then(() => null, (e: Error) => (e.cause as Error | undefined)?.message ?? e.message);
        return {
          body: {
            workflowId: params.workflowId,
            runId: description.runId,
            status,
            startedAt: description.startTime?.toISOString() ?? null,
            closedAt: description.closeTime?.toISOString() ?? null,
            progress: progress as Record<string, unknown> | null,
            result: result as unknown as Record<string, unknown> | null,
            failure,
            temporalUiUrl: uiLink(params.workflowId),
          },
        };
      },
    }),
  ];
}

