import getPort from 'get-port';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Client, Connection, type WorkflowClientInterceptor } from '@temporalio/client';
import { IntakeDispatcher, type IntakeDispatcherOptions } from '../../api/services/intake-dispatcher.js';
import { SubmissionSignal } from '../../api/services/intake-outbox.js';
import { storeSubmissions, type QueuedSubmission } from '../../lib/store/outbox.js';
import { writeReadModel } from '../../lib/store/prospects.js';
import { loadConfig, type Config } from '../../lib/config/config.js';
import { createLogger } from '../../lib/config/logger.js';
import { testDatabase, testTemporal, uniqueTaskQueue } from '../helpers/stack.js';
import { testDataConverter } from '../helpers/payload-keys.js';
import { uniqueLead } from '../workflow/intake-helpers.js';
import { startProspectsApi, type ProspectsApi } from './prospects-api.js';

/**
 * The intake outbox: POST /v1/prospects stores the lead and answers 202 without
 * calling Temporal; the dispatcher of every API replica starts the intakes.
 * Leads are taken while Temporal is unreachable and start once it is back;
 * two dispatchers never start one submission twice; a second submission
 * while the first waits answers "attached" and makes no second workflow;
 * dispatching a row again lands on the run it made. No worker runs: the
 * intakes are started on a task queue of this file and terminated at the end.
 */

const log = createLogger({ name: 'outbox-test', level: 'silent' });
/**
 * Short back-offs and polls: the tests wait on dispatch, not on timers. No
 * worker takes the intakes here, so the back-pressure on waiting intakes is off.
 */
const fast: Partial<IntakeDispatcherOptions> = { pollMs: 100, retryInitialMs: 200, retryMaxMs: 500, startTimeoutMs: 1_500, maxBacklog: Infinity };

/** A client on the shared connection that counts Temporal start calls per workflow id. */
function countingClient(connection: Client['connection']): { client: Client; starts: Map<string, number> } {
  const starts = new Map<string, number>();
  const counter: WorkflowClientInterceptor = {
    async startWithDetails(input, next) {
      starts.set(input.options.workflowId, (starts.get(input.options.workflowId) ?? 0) + 1);
      return next(input);
    },
  };
  return { client: new Client({ connection, interceptors: { workflow: [counter] }, dataConverter: testDataConverter() }), starts };
}

describe('intake outbox and dispatcher', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let config: Config;
  const taskQueue = uniqueTaskQueue('intake-outbox');
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    [db, temporal] = await Promise.all([testDatabase(), testTemporal()]);
    config = await loadConfig({ env: {}, overrides: {} });
  });

  // Each test's APIs and dispatchers stop with it: the next test's rows are its own dispatchers' only.
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => undefined);
  });

  afterAll(async () => {
    const { rows } = await db.pool.query('SELECT DISTINCT workflow_id, run_id FROM intake_submissions WHERE run_id IS NOT NULL');
    await Promise.allSettled(rows.map((r) => temporal.client.workflow.getHandle(r.workflow_id, r.run_id).terminate('test over')));
    await temporal?.close();
    await db?.drop();
  });

  async function api(temporalClient: Client, dispatcher: Partial<IntakeDispatcherOptions> | false = fast): Promise<ProspectsApi & { writer: string }> {
    const started = await startProspectsApi({ config, pool: db.pool, temporal: temporalClient, taskQueue, dispatcher });
    cleanups.push(() => started.close());
    return Object.assign(started, { writer: await started.key(['prospects:write', 'prospects:read']) });
  }

  const submit = (a: ProspectsApi & { writer: string }, body: unknown) => a.call('POST', '/v1/prospects', { key: a.writer, body });

  async function outbox(ids: string[]) {
    const { rows } = await db.pool.query('SELECT id::text, workflow_id, run_id, outcome, attempts, last_error, dispatched_at FROM intake_submissions WHERE id = ANY($1::uuid[]) ORDER BY created_at', [ids]);
    return rows;
  }

  async function metric(url: string, name: string): Promise<number> {
    const text = await (await fetch(`${url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return Number(line?.split(' ')[1]);
  }

  it('takes leads while Temporal is unreachable; a replica with a live client starts each exactly once', async () => {
    const dead = Connection.lazy({ address: `127.0.0.1:${await getPort()}` });
    cleanups.push(() => dead.close());
    const down = await api(new Client({ connection: dead }));

    const leads = Array.from({ length: 6 }, () => uniqueLead());
    const commitsTimed = `prospector_api_step_duration_seconds_count{step="lead_store"}`;
    const timedBefore = (await metric(down.url, commitsTimed)) || 0;
    const answers = await Promise.all(leads.map((lead) => submit(down, lead)));
    // Each lead's durable commit is timed (where a slow answer's time went).
    expect((await metric(down.url, commitsTimed)) - timedBefore).toBe(6);
    expect(answers.map((a) => a.status)).toEqual(Array(6).fill(202));
    expect(answers.map((a) => a.body.status)).toEqual(Array(6).fill('queued'));
    const ids = answers.map((a) => a.body.submissionId as string);

    // The dispatcher tried, failed, and keeps every row with the reason and a back-off.
    await expect.poll(async () => (await outbox(ids)).filter((r) => r.attempts >= 1 && r.last_error).length, { timeout: 15_000 }).toBe(6);
    expect((await outbox(ids)).every((r) => r.dispatched_at === null && r.run_id === null)).toBe(true);
    expect(await metric(down.url, 'prospector_intake_outbox_pending')).toBe(6);
    expect(await metric(down.url, 'prospector_intake_outbox_oldest_seconds')).toBeGreaterThan(0);
    const ready = await fetch(`${down.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { down: string[] }).down).toContain('temporal');
    // Readable at once, as submitted.
    const queued = await down.call('GET', `/v1/prospects/${encodeURIComponent(answers[0]!.body.id)}`, { key: down.writer });
    expect(queued.body).toMatchObject({ stage: 'SUBMITTED', runId: null, email: leads[0]!.email });
    expect(queued.body.audit).toEqual([expect.objectContaining({ action: 'submit', outcome: 'queued' })]);
    await down.close();

    const live = countingClient(temporal.client.connection);
    const up = await api(live.client);
    const runs = await Promise.all(ids.map((id) => up.runOf(id)));
    expect(runs.map((r) => r.outcome)).toEqual(Array(6).fill('started'));
    expect([...live.starts.values()]).toEqual(Array(6).fill(1));
    for (const [i, run] of runs.entries()) {
      expect(run.workflowId).toBe(`prospect-${leads[i]!.email}`);
      const description = await temporal.client.workflow.getHandle(run.workflowId, run.runId).describe();
      expect(description.memo).toEqual({ submissionId: ids[i] });
      // No worker yet: the person's row is the submission, now with its run.
      const row = (await db.pool.query('SELECT run_id, intake_key, stage, submission_id FROM prospect_rows WHERE id = $1', [run.workflowId])).rows[0];
      expect(row).toEqual({ run_id: run.runId, intake_key: run.runId, stage: 'SUBMITTED', submission_id: ids[i] });
    }
    const dispatchAudit = await db.pool.query(`SELECT outcome, run_id, details FROM audit_events WHERE action = 'dispatch' AND details->>'submissionId' = ANY($1::text[])`, [ids]);
    expect(dispatchAudit.rows).toHaveLength(6);
    expect(dispatchAudit.rows.every((r) => r.outcome === 'started' && r.details.intakeKey === r.run_id && r.details.attempts >= 2)).toBe(true);
    await expect.poll(() => metric(up.url, 'prospector_intake_outbox_pending')).toBe(0);
  });

  it('two dispatchers on one table never start a submission twice', async () => {
    const intake = await api(temporal.client, false);
    const answers = await Promise.all(Array.from({ length: 24 }, () => submit(intake, uniqueLead())));
    const ids = answers.map((a) => a.body.submissionId as string);
    expect(answers.every((a) => a.body.status === 'queued')).toBe(true);

    const counted = [countingClient(temporal.client.connection), countingClient(temporal.client.connection)];
    const dispatchers = counted.map(({ client }) => new IntakeDispatcher({ pool: db.pool, temporal: client, log }, { ...fast, batchSize: 4, concurrency: 3 }));
    for (const d of dispatchers) cleanups.push(() => d.close());
    for (const d of dispatchers) d.start();
    await expect.poll(async () => (await outbox(ids)).filter((r) => r.dispatched_at).length, { timeout: 30_000 }).toBe(24);

    const starts = new Map<string, number>();
    for (const { starts: s } of counted) for (const [id, n] of s) starts.set(id, (starts.get(id) ?? 0) + n);
    expect(starts.size).toBe(24);
    expect([...starts.values()].every((n) => n === 1)).toBe(true);
    // Both took part (each claimed batches of 4 from the same table).
    expect(counted.every(({ starts: s }) => s.size > 0)).toBe(true);
    const rows = await outbox(ids);
    expect(rows.every((r) => r.outcome === 'started' && r.attempts === 1)).toBe(true);
    expect(new Set(rows.map((r) => r.run_id)).size).toBe(24);
  });

  it('a second submission while the first waits answers "attached"; one workflow; dispatching again lands on the same run', async () => {
    const intake = await api(temporal.client, false);
    const lead = uniqueLead();
    const first = await submit(intake, lead);
    const second = await submit(intake, { email: lead.email.replace('@', '+again@').toUpperCase(), name: 'Someone Else' });
    expect(first.body).toMatchObject({ status: 'queued', id: `prospect-${lead.email}` });
    expect(second.body).toMatchObject({ status: 'attached', id: first.body.id });
    const workflowId: string = first.body.id;
    const ids = [first.body.submissionId as string, second.body.submissionId as string];

    const waiting = await intake.call('GET', `/v1/prospects/${encodeURIComponent(workflowId)}`, { key: intake.writer });
    expect(waiting.body).toMatchObject({ stage: 'SUBMITTED', runId: null, name: lead.name });
    expect(waiting.body.audit.map((a: { outcome: string }) => a.outcome)).toEqual(['queued', 'attached']);

    const live = countingClient(temporal.client.connection);
    const dispatcher = new IntakeDispatcher({ pool: db.pool, temporal: live.client, log }, fast);
    cleanups.push(() => dispatcher.close());
    dispatcher.start();
    const [a, b] = await Promise.all(ids.map((id) => intake.runOf(id)));
    expect(a!.runId).toBe(b!.runId);
    expect([a!.outcome, b!.outcome].sort()).toEqual(['attached', 'started']);
    const startedBy = a!.outcome === 'started' ? ids[0] : ids[1];
    const description = await temporal.client.workflow.getHandle(workflowId).describe();
    expect(description.runId).toBe(a!.runId);
    expect(description.memo).toEqual({ submissionId: startedBy });
    await expect.poll(() => temporal.client.workflow.count(`WorkflowId = "${workflowId}"`).then((c) => c.count), { timeout: 10_000 }).toBe(1);
    const row = (await db.pool.query('SELECT run_id, intake_key, submission_id FROM prospect_rows WHERE id = $1', [workflowId])).rows[0];
    expect(row).toEqual({ run_id: a!.runId, intake_key: a!.runId, submission_id: startedBy });
    const shown = await intake.call('GET', `/v1/prospects/${encodeURIComponent(workflowId)}`, { key: intake.writer });
    expect(shown.body.audit.map((x: { action: string }) => x.action).sort()).toEqual(['dispatch', 'dispatch', 'submit', 'submit']);

    // The run ends; the row is dispatched again (as after a crash between start and record): same run, no new one.
    await temporal.client.workflow.getHandle(workflowId, a!.runId).terminate('ended for the test');
    await db.pool.query('UPDATE intake_submissions SET dispatched_at = NULL, outcome = NULL, run_id = NULL, next_attempt_at = now() WHERE id = $1', [startedBy]);
    dispatcher.wake();
    const again = await intake.runOf(startedBy!);
    expect(again).toEqual({ workflowId, runId: a!.runId, outcome: 'started' });
    expect(live.starts.get(workflowId)).toBe(3);
    await expect.poll(() => temporal.client.workflow.count(`WorkflowId = "${workflowId}"`).then((c) => c.count), { timeout: 10_000 }).toBe(1);
  });

  it('one batch holding two submissions for one person stores both: the second attached, one read-model row', async () => {
    const lead = uniqueLead();
    const workflowId = `prospect-${lead.email}`;
    const queued = (id: string, name: string): QueuedSubmission => ({
      id, workflowId, domain: lead.email.split('@')[1]!, keyId: null, taskQueue,
      input: { lead: { ...lead, name }, mode: 'draft_only', requestedBy: 'test', submissionId: id },
    });
    const ids = [crypto.randomUUID(), crypto.randomUUID()];
    expect(await storeSubmissions(db.pool, [queued(ids[0]!, 'First'), queued(ids[1]!, 'Second')])).toEqual([false, true]);
    // One row for the person: the API writes no read-model row; the waiting submission is shown.
    expect((await db.pool.query('SELECT count(*)::int AS n FROM prospects WHERE id = $1', [workflowId])).rows[0].n).toBe(0);
    const row = (await db.pool.query('SELECT stage, name, submission_id FROM prospect_rows WHERE id = $1', [workflowId])).rows;
    expect(row).toEqual([{ stage: 'SUBMITTED', name: 'First', submission_id: ids[0] }]);
    expect((await outbox(ids)).map((r) => r.id)).toEqual(ids);
    const audit = await db.pool.query(`SELECT outcome FROM audit_events WHERE action = 'submit' AND workflow_id = $1 ORDER BY id`, [workflowId]);
    expect(audit.rows.map((r) => r.outcome)).toEqual(['queued', 'attached']);
    await db.pool.query('UPDATE intake_submissions SET dispatched_at = now(), outcome = $2, run_id = $3 WHERE id = ANY($1::uuid[])', [ids, 'attached', 'none']);
  });

  it('starts no more intakes while maxBacklog started ones wait for a worker; more once a worker takes them', async () => {
    // Intakes the earlier tests started (no worker here) would count as waiting too: make them old.
    await db.pool.query(`UPDATE intake_submissions SET dispatched_at = now() - interval '1 hour' WHERE outcome = 'started'`);
    // What a worker's first step does: the run's read-model row.
    const takeUp = async () => {
      for (const r of await dispatched()) {
        await writeReadModel(db.pool, { workflowId: r.workflow_id, runId: r.run_id!, intakeKey: r.run_id!, runStartedAt: new Date().toISOString(), seq: 1, stage: 'RESOLVING', approvalState: 'NONE', mode: 'draft_only', draftVersion: 0, lead: { email: r.workflow_id.slice('prospect-'.length), domain: 'x.example' } });
      }
    };
    const intake = await api(temporal.client, false);
    const answers = await Promise.all(Array.from({ length: 5 }, () => submit(intake, uniqueLead())));
    const ids = answers.map((a) => a.body.submissionId as string);
    const dispatcher = new IntakeDispatcher({ pool: db.pool, temporal: temporal.client, log }, { ...fast, maxBacklog: 2, backlogRecheckMs: 50 });
    // Each round measures the backlog first; rounds run one at a time (see dispatchOnce).
    const backlogChecks = vi.spyOn(dispatcher as unknown as { backlog(): Promise<number> }, 'backlog');
    cleanups.push(() => dispatcher.close());
    dispatcher.start();
    const dispatched = async () => (await outbox(ids)).filter((r) => r.dispatched_at);
    await expect.poll(async () => (await dispatched()).length, { timeout: 10_000 }).toBe(2);
    // The first check from now on sees both waiting; the one after it begins only once that round,
    // and any start it made, is over. A third row dispatched by then is a round that ignored the backlog.
    const seen = backlogChecks.mock.calls.length;
    await expect.poll(() => backlogChecks.mock.calls.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(seen + 2);
    expect((await dispatched()).length).toBe(2);
    // A worker takes them up: two more start.
    await takeUp();
    await expect.poll(async () => (await dispatched()).length, { timeout: 10_000 }).toBe(4);
    await takeUp();
    await expect.poll(async () => (await dispatched()).length, { timeout: 10_000 }).toBe(5);
  });

  it('yields to slow submissions at once, keeps starting at its floor, and speeds up again once they are fast', async () => {
    const signal = new SubmissionSignal(db.pool);
    const dispatcher = new IntakeDispatcher({ pool: db.pool, temporal: temporal.client, log, signal }, { ...fast, minStartsPerSecond: 2 });
    cleanups.push(() => dispatcher.close());
    dispatcher.start();
    const store = async (n: number) => {
      const rows = Array.from({ length: n }, (): QueuedSubmission => {
        const lead = uniqueLead();
        const id = crypto.randomUUID();
        return { id, workflowId: `prospect-${lead.email}`, domain: lead.email.split('@')[1]!, keyId: null, taskQueue, input: { lead, mode: 'draft_only', requestedBy: 'test', submissionId: id } };
      });
      await storeSubmissions(db.pool, rows);
      signal.submitted();
      return rows.map((r) => r.id);
    };
    const dispatched = async (ids: string[]) => (await outbox(ids)).filter((r) => r.dispatched_at).length;

    // Quiet: no limit, 30 start at once (before the fix these left a debt that blocked later starts).
    const quiet = await store(30);
    await expect.poll(() => dispatched(quiet), { timeout: 15_000 }).toBe(30);

    // A burst of slow submissions (p95 100 ms, well over yieldAboveMs): the start rate drops to 2/s.
    const latencyReads = vi.spyOn(signal, 'recentLatency');
    const slow = setInterval(() => Array.from({ length: 25 }, () => signal.submitted(100)), 200);
    cleanups.push(async () => clearInterval(slow));
    signal.submitted(100);
    // The dispatcher drops its rate in the same call that reads the burst's latency: once it has read a slow one, it yields.
    const sawBurst = () => latencyReads.mock.results.some((r) => r.type === 'return' && r.value.count >= 20 && r.value.p95 >= 100);
    await expect.poll(sawBurst, { timeout: 10_000 }).toBe(true);
    const during = await store(12);
    await new Promise((r) => setTimeout(r, 2_500));
    const startedDuring = await dispatched(during);
    expect(startedDuring).toBeGreaterThanOrEqual(2);
    expect(startedDuring).toBeLessThanOrEqual(8);

    // Fast again: the rate grows back and the rest start.
    clearInterval(slow);
    await expect.poll(() => dispatched(during), { timeout: 15_000 }).toBe(12);
  });

  it('a lead for a person whose intake ended starts a new intake; a late write of the old one cannot take the row back', async () => {
    const intake = await api(temporal.client, false);
    const lead = uniqueLead();
    const first = await submit(intake, lead);
    const dispatcher = new IntakeDispatcher({ pool: db.pool, temporal: temporal.client, log }, fast);
    cleanups.push(() => dispatcher.close());
    dispatcher.start();
    const old = await intake.runOf(first.body.submissionId);
    // The old intake ends REJECTED (as its workflow would record it).
    const email = lead.email;
    const domain = email.split('@')[1]!;
    const oldStamp = {
      workflowId: old.workflowId, runId: old.runId, intakeKey: old.runId, runStartedAt: new Date(Date.now() - 60_000).toISOString(),
      seq: 9, stage: 'REJECTED' as const, approvalState: 'REJECTED' as const, mode: 'draft_only' as const, draftVersion: 1, lead: { email, domain },
    };
    await writeReadModel(db.pool, oldStamp);
    await temporal.client.workflow.getHandle(old.workflowId, old.runId).terminate('ended for the test');

    const next = await submit(intake, { ...lead, company: 'Newer Co' });
    expect(next.body.status).toBe('queued');
    await writeReadModel(db.pool, { ...oldStamp, seq: 10 });
    const row = (await db.pool.query('SELECT stage, run_id, company FROM prospect_rows WHERE id = $1', [old.workflowId])).rows[0];
    expect(row).toEqual({ stage: 'SUBMITTED', run_id: null, company: 'Newer Co' });

    const run = await intake.runOf(next.body.submissionId);
    expect(run.outcome).toBe('started');
    expect(run.runId).not.toBe(old.runId);
    expect((await db.pool.query('SELECT stage, run_id, intake_key FROM prospect_rows WHERE id = $1', [old.workflowId])).rows[0]).toEqual({ stage: 'SUBMITTED', run_id: run.runId, intake_key: run.runId });
    // The new run's first step takes the row over from the old intake's.
    await writeReadModel(db.pool, { ...oldStamp, runId: run.runId, intakeKey: run.runId, runStartedAt: new Date().toISOString(), seq: 1, stage: 'RESOLVING', approvalState: 'NONE' });
    expect((await db.pool.query('SELECT stage, run_id FROM prospect_rows WHERE id = $1', [old.workflowId])).rows).toEqual([{ stage: 'RESOLVING', run_id: run.runId }]);
  });
});
