import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../api/app.js';
import { harvestRoutesWith } from '../../api/routes/harvests.js';
import { signalRoutesWith } from '../../api/routes/signals.js';
import { createLogger } from '../../lib/config/logger.js';
import { ensureHarvestSchedule, harvestSchedule } from '../../api/services/harvest-schedule.js';
import type { HarvestSummary } from '../../lib/domain/harvest.js';
import { runCli as cli } from '../helpers/cli.js';
import { harvestStack, type HarvestStack } from './helpers.js';
import { HARVEST_WORKFLOW } from '../../workflows/harvest/messages.js';

/**
 * The harvest Schedule (real Temporal server), the /v1 harvest and signal
 * routes, and the `prospector harvest|signals` commands calling them.
 */

const scheduleId = `harvest-test-${randomUUID().slice(0, 8)}`;

async function until<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}


describe('harvest schedule, API and CLI', () => {
  let s: HarvestStack;
  let server: Server;
  let api: string;
  let tmp: string;
  const fetchJson = async (method: string, route: string, body?: unknown) => {
    const res = await fetch(`${api}${route}`, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as any };
  };

  beforeAll(async () => {
    s = await harvestStack({ HARVEST_SCHEDULE_ID: scheduleId, HARVEST_INTERVAL: '1h' });
    const deps = { config: s.config, pool: s.db.pool, temporal: s.temporal.client, log: createLogger({ name: 'test', level: 'silent' }) };
    const app = createApp({ ...deps, routes: [...harvestRoutesWith(deps, s.harvest), ...signalRoutesWith(deps, s.harvest)] });
    await new Promise<void>((resolve) => {
      server = app.listen(0, '127.0.0.1', () => resolve());
    });
    api = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    process.env.PROSPECTOR_API_URL = api;
    process.env.PROSPECTOR_API_KEY = 'not-checked-here';
    tmp = mkdtempSync(path.join(os.tmpdir(), 'signals-export-'));
  });

  afterAll(async () => {
    delete process.env.PROSPECTOR_API_URL;
    delete process.env.PROSPECTOR_API_KEY;
    await harvestSchedule(s.temporal.client, scheduleId).delete().catch(() => undefined);
    server?.close();
    await s?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('creating the schedule twice leaves one schedule, with the configured interval and overlap SKIP', async () => {
    const first = await ensureHarvestSchedule(s.temporal.client, { harvest: s.harvest });
    const second = await ensureHarvestSchedule(s.temporal.client, { harvest: s.harvest });
    expect(first).toEqual({ id: scheduleId, created: true });
    expect(second).toEqual({ id: scheduleId, created: false });
    const ids: string[] = [];
    for await (const sched of s.temporal.client.schedule.list()) if (sched.scheduleId === scheduleId) ids.push(sched.scheduleId);
    expect(ids).toEqual([scheduleId]);
    const d = await s.temporal.client.schedule.getHandle(scheduleId).describe();
    expect(d.spec.intervals?.map((i) => i.every)).toEqual([3_600_000]);
    expect(d.policies.overlap).toBe('SKIP');
    expect(d.action).toMatchObject({ type: 'startWorkflow', workflowType: HARVEST_WORKFLOW, taskQueue: s.taskQueue });
    // The API's create is the same idempotent call.
    const viaApi = await fetchJson('POST', '/v1/harvests/schedule');
    expect(viaApi.status).toBe(200);
  });

  it('pause, resume, interval and trigger through the API show in describe(); the triggered run harvests', async () => {
    const handle = s.temporal.client.schedule.getHandle(scheduleId);
    const paused = await fetchJson('POST', '/v1/harvests/schedule/pause', { note: 'maintenance' });
    expect(paused.status).toBe(200);
    expect(paused.body).toMatchObject({ paused: true, note: 'maintenance' });
    expect((await handle.describe()).state).toMatchObject({ paused: true, note: 'maintenance' });

    const resumed = await fetchJson('POST', '/v1/harvests/schedule/resume', {});
    expect(resumed.body.paused).toBe(false);
    expect((await handle.describe()).state.paused).toBe(false);

    const patched = await fetchJson('PATCH', '/v1/harvests/schedule', { interval: '30m' });
    expect(patched.body.intervalMs).toBe(1_800_000);
    expect((await handle.describe()).spec.intervals?.[0]?.every).toBe(1_800_000);
    expect((await fetchJson('PATCH', '/v1/harvests/schedule', { interval: '2s' })).status).toBe(400);

    const triggered = await fetchJson('POST', '/v1/harvests/schedule/trigger', {});
    expect(triggered.status).toBe(200);
    const action = await until(async () => (await handle.describe()).info.recentActions[0], 'the triggered action');
    expect((await handle.describe()).info.numActionsTaken).toBeGreaterThanOrEqual(1);
    const run = s.temporal.client.workflow.getHandle(action.action.workflow.workflowId);
    const summary = (await run.result()) as HarvestSummary;
    expect(summary.trigger).toBe('schedule');
    expect(summary.queries.map((q) => q.name)).toEqual(['competitor-pain', 'brand']);
    expect(summary.totals.fetched).toBeGreaterThan(10);
    expect(summary.totals.scored).toBe(summary.totals.inserted);
  });

  it('backfill takes the missed runs of a past range', async () => {
    const handle = s.temporal.client.schedule.getHandle(scheduleId);
    const before = (await handle.describe()).info.numActionsTaken;
    const now = Date.now();
    const res = await fetchJson('POST', '/v1/harvests/schedule/backfill', { start: new Date(now - 95 * 60_000).toISOString(), end: new Date(now - 5 * 60_000).toISOString(), overlap: 'ALLOW_ALL' });
    expect(res.status).toBe(200);
    // 30-minute interval over 90 minutes: three runs.
    await until(async () => ((await handle.describe()).info.numActionsTaken >= before + 3 ? true : undefined), 'backfilled runs');
    const bad = await fetchJson('POST', '/v1/harvests/schedule/backfill', { start: new Date(now).toISOString(), end: new Date(now - 1000).toISOString() });
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0].field).toBe('body.start');
    // Let the backfilled runs finish (they find nothing new) before the next test counts things.
    for (const r of (await handle.describe()).info.recentActions) await s.temporal.client.workflow.getHandle(r.action.workflow.workflowId).result().catch(() => undefined);
  });

  it('POST /v1/harvests starts a run now (202), and GET /v1/harvests/{id} reports its summary', async () => {
    const bad = await fetchJson('POST', '/v1/harvests', { queryNames: ['nope'] });
    expect(bad.status).toBe(400);
    expect(bad.body.detail).toContain('nope');

    const started = await fetchJson('POST', '/v1/harvests', { queryNames: ['brand'] });
    expect(started.status).toBe(202);
    expect(started.body.workflowId).toMatch(/^harvest-manual-/);
    await s.temporal.client.workflow.getHandle(started.body.workflowId).result();
    const view = await fetchJson('GET', `/v1/harvests/${started.body.workflowId}`);
    expect(view.body).toMatchObject({ status: 'COMPLETED', result: { trigger: 'api', queries: [{ name: 'brand' }] } });
    const missing = await fetchJson('GET', '/v1/harvests/no-such-run');
    expect(missing.status).toBe(404);
    const list = await fetchJson('GET', '/v1/harvests?limit=50');
    expect(list.body.items.some((r: { workflowId: string }) => r.workflowId === started.body.workflowId)).toBe(true);
  });

  it('GET /v1/signals filters and pages with a stable cursor; top and stats agree with the store', async () => {
    const all = await s.db.pool.query('SELECT id::text, score::float AS score, category FROM signals ORDER BY signals.score DESC, signals.id DESC');
    expect(all.rows.length).toBeGreaterThan(10);

    // Every signal exactly once across pages, in score order.
    const seen: { id: string; score: number }[] = [];
    let cursor: string | undefined;
    let total: number | undefined;
    do {
      const res = await fetchJson('GET', `/v1/signals?sort=score&limit=7${cursor ? `&cursor=${cursor}` : '&include_total=true'}`);
      expect(res.status).toBe(200);
      total ??= res.body.total;
      seen.push(...res.body.items);
      cursor = res.body.nextCursor ?? undefined;
    } while (cursor);
    expect(total).toBe(all.rows.length);
    expect(seen.map((x) => x.id)).toEqual(all.rows.map((r) => r.id));

    const min = all.rows[Math.floor(all.rows.length / 2)].score;
    const filtered = await fetchJson('GET', `/v1/signals?min_score=${min}&limit=500`);
    expect(filtered.body.items.length).toBe(all.rows.filter((r) => r.score >= min).length);
    const bySecurity = await fetchJson('GET', '/v1/signals?category=security&limit=500');
    expect(bySecurity.body.items.length).toBe(all.rows.filter((r) => r.category === 'security').length);
    expect(bySecurity.body.items.every((x: { analysis: { category: string } }) => x.analysis.category === 'security')).toBe(true);
    const recent = await fetchJson('GET', `/v1/signals?since=2h&limit=500`);
    expect(recent.body.items.every((x: { postedAt: string }) => Date.parse(x.postedAt) >= Date.now() - 2 * 3_600_000 - 5_000)).toBe(true);

    expect((await fetchJson('GET', '/v1/signals?category=nonsense')).status).toBe(400);
    expect((await fetchJson('GET', '/v1/signals?cursor=garbage')).status).toBe(400);
    expect((await fetchJson('GET', '/v1/signals?min_score=90&max_score=10')).status).toBe(400);

    const lastDay = await fetchJson('GET', '/v1/signals/top');
    expect(lastDay.status).toBe(200);
    expect(Date.parse(lastDay.body.since)).toBeGreaterThan(Date.now() - 24 * 3_600_000 - 60_000);
    expect(lastDay.body.items.every((x: { postedAt: string }) => Date.parse(x.postedAt) >= Date.parse(lastDay.body.since))).toBe(true);
    const top = await fetchJson('GET', '/v1/signals/top?limit=3&since=7d');
    expect(top.body.items.map((x: { id: string }) => x.id)).toEqual(all.rows.slice(0, 3).map((r) => r.id));
    const stats = await fetchJson('GET', '/v1/signals/stats');
    expect(stats.body).toMatchObject({ total: all.rows.length, analysed: all.rows.length, scored: all.rows.length, threshold: 60 });
    expect(Object.values(stats.body.byCategory as Record<string, number>).reduce((a, b) => a + b, 0)).toBe(all.rows.length);
    const recentStats = await fetchJson('GET', '/v1/signals/stats?since=2h');
    expect(recentStats.status).toBe(200);
    expect(recentStats.body.total).toBe((await s.db.pool.query(`SELECT count(*)::int AS n FROM signals WHERE posted_at >= now() - interval '2 hours'`)).rows[0].n);
    const one = await fetchJson('GET', `/v1/signals/${all.rows[0].id}`);
    expect(one.body).toMatchObject({ id: all.rows[0].id, score: all.rows[0].score });
    expect((await fetchJson('GET', '/v1/signals/999999')).status).toBe(404);
  });

  it('the CLI shows and pauses the schedule, lists top signals and exports them as csv and ndjson', async () => {
    const show = await cli('harvest', 'schedule', 'show', '--json');
    expect(show.code).toBe(0);
    expect(JSON.parse(show.out)).toMatchObject({ id: scheduleId, paused: false, intervalMs: 1_800_000 });

    const pause = await cli('harvest', 'schedule', 'pause', '--note', 'from the cli');
    expect(pause.code).toBe(0);
    expect(pause.out).toContain('PAUSED');
    expect((await s.temporal.client.schedule.getHandle(scheduleId).describe()).state).toMatchObject({ paused: true, note: 'from the cli' });
    expect((await cli('harvest', 'schedule', 'resume')).code).toBe(0);
    const interval = await cli('harvest', 'schedule', 'set-interval', '45m');
    expect(interval.out).toContain('every 45m');

    const top = await cli('signals', 'top', '--limit', '3', '--since', '7d', '--json');
    expect(JSON.parse(top.out)).toHaveLength(3);

    const total = (await s.db.pool.query('SELECT count(*)::int AS n FROM signals')).rows[0].n as number;
    const csvFile = path.join(tmp, 'signals.csv');
    const csv = await cli('signals', 'export', '--format', 'csv', '--out', csvFile, '--page-size', '10');
    expect(csv.code).toBe(0);
    expect(csv.err).toContain(`exported ${total} signal(s)`);
    const text = readFileSync(csvFile, 'utf8');
    expect(text.split('\n')[0]).toMatch(/^id,source,external_id,url,/);
    // Quoted fields may hold line breaks; count records by their leading id.
    expect(text.match(/^\d+,(x|feed),/gm)).toHaveLength(total);

    const nd = await cli('signals', 'export', '--min-score', '30');
    const lines = nd.out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const expected = (await s.db.pool.query('SELECT count(*)::int AS n FROM signals WHERE score >= 30')).rows[0].n;
    expect(lines).toHaveLength(expected);
    expect(lines.every((l: { score: number }) => l.score >= 30)).toBe(true);

    const run = await cli('harvest', 'run', '--query', 'brand', '--wait', '--json');
    expect(run.code).toBe(0);
    expect(JSON.parse(run.out)).toMatchObject({ status: 'COMPLETED', result: { trigger: 'api', queries: [{ name: 'brand', stoppedBy: 'complete' }] } });
    const status = await cli('harvest', 'status', JSON.parse(run.out).workflowId);
    expect(status.out).toMatch(/COMPLETED\n  query brand \[x\]: 1 page\(s\)/);

    const bad = await cli('harvest', 'run', '--query', 'nope');
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('unknown or disabled queries: nope');
  });
});
