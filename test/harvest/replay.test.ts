import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import proto from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { WORKFLOWS_PATH } from '../../workers/worker.js';
import type { HarvestSummary } from '../../lib/domain/harvest.js';
import { COMPETITORS, harvestStack } from './helpers.js';
import { quietTemporalRuntime } from '../helpers/stack.js';
import { testDataConverter } from '../helpers/payload-keys.js';

/**
 * Determinism guard: histories of real harvest runs (committed under
 * histories/) must replay against today's workflow code. A change that would
 * break running harvests fails here and needs workflow versioning (patched()).
 *
 * Re-record after an intended, versioned change:
 *   HARVEST_SAVE_HISTORIES=1 npx vitest run test/harvest/replay.test.ts
 */

const DIR = path.join(import.meta.dirname, 'histories');
const RECORD = process.env.HARVEST_SAVE_HISTORIES === '1';

function load(file: string) {
  return proto.temporal.api.history.v1.History.fromObject(JSON.parse(readFileSync(file, 'utf8')));
}

function save(name: string, history: unknown) {
  mkdirSync(DIR, { recursive: true });
  writeFileSync(path.join(DIR, `${name}.json`), `${JSON.stringify((history as { toJSON?: () => unknown }).toJSON?.() ?? history)}\n`);
}

// Not a test but the recorder of the histories below: defined only when asked for (HARVEST_SAVE_HISTORIES=1).
if (RECORD) describe('record harvest histories', () => {
  it('records a full run (fallback batch, recovered post, intake start), its analysis child, and a continued-as-new run', async () => {
    const s = await harvestStack();
    try {
      await s.db.pool.query(`INSERT INTO signal_author_contacts (source, author_handle, email, name) VALUES ('x', 'priya_sdr', 'priya@example.com', 'Priya Raman')`);
      await s.control.post('/_sandbox/x/tweets', {
        username: 'priya_sdr',
        text: 'Urgent: looking for an alternative to Outboundly, evaluating options this week',
        age_minutes: 1,
        public_metrics: { like_count: 400, retweet_count: 40, reply_count: 30, quote_count: 5 },
      });
      await s.control.addFaults(
        { provider: 'openai', kind: 'error', status: 503, count: 3 },
        { provider: 'slack', kind: 'apply_then_fail', match: 'chat.postMessage', count: 1 },
      );
      const handle = await s.start(
        { queries: [{ ...COMPETITORS, startIntake: true }], tuning: { pageSize: 10, batchSize: 20, analysisConcurrency: 1, notifyThreshold: 40, digestMin: 1000, intakeTaskQueue: `${s.taskQueue}-intake` } },
        'harvest-replay-full',
      );
      const summary = (await handle.result()) as HarvestSummary;
      expect(summary.totals.analysed.fallbackBatches).toBe(1);
      expect(summary.totals.notified.recovered).toBe(1);
      expect(summary.totals.intakes.started).toBe(1);
      save('harvest-full', await handle.fetchHistory());
      save('harvest-analysis-child', await s.temporal.client.workflow.getHandle(`harvest-analysis-${summary.runKey}-0`).fetchHistory());
      const { rows } = await s.db.pool.query('SELECT intake_workflow_id FROM signals WHERE intake_workflow_id IS NOT NULL');
      await s.temporal.client.workflow.getHandle(rows[0].intake_workflow_id).terminate('recording over');

      await s.control.post(
        '/_sandbox/x/tweets',
        Array.from({ length: 30 }, (_, i) => ({ username: 'ae_kevin', text: `Salesbolt note ${i}`, age_minutes: 2 })),
      );
      const long = await s.start({ queries: [{ name: 'long', source: 'x', query: 'Salesbolt' }], tuning: { pageSize: 10, maxHistoryEvents: 30 } }, 'harvest-replay-continued');
      const longSummary = (await long.result()) as HarvestSummary;
      expect(longSummary.continuedAsNew).toBeGreaterThan(0);
      save('harvest-continued-first-run', await s.temporal.client.workflow.getHandle('harvest-replay-continued', long.firstExecutionRunId).fetchHistory());
      save('harvest-continued-last-run', await long.fetchHistory());
    } finally {
      await s.close();
    }
  }, 180_000);
});

describe('harvest workflow replay', () => {
  const files = () => readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();

  it('has committed histories for the main paths', () => {
    expect(files()).toEqual(['harvest-analysis-child.json', 'harvest-continued-first-run.json', 'harvest-continued-last-run.json', 'harvest-full.json']);
  });

  it('replays every history with the current workflow code', async () => {
    quietTemporalRuntime('ERROR');
    const histories = files().map((f) => ({ workflowId: f.replace(/\.json$/, ''), history: load(path.join(DIR, f)) }));
    const failures: string[] = [];
    let replayed = 0;
    // Through the test stack's codec: these histories hold plain payloads (passed through); one re-recorded now is encrypted.
    for await (const result of Worker.runReplayHistories({ workflowsPath: WORKFLOWS_PATH, dataConverter: testDataConverter() }, histories)) {
      replayed++;
      if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
    }
    expect(failures).toEqual([]);
    expect(replayed).toBe(histories.length);
  }, 120_000);
});
