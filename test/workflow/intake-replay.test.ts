import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import proto from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { WORKFLOWS_PATH } from '../../workers/worker.js';
import { quietTemporalRuntime } from '../helpers/stack.js';

/**
 * Determinism guard: histories of real intake runs (committed under
 * histories/, recorded by intake.test.ts with INTAKE_SAVE_HISTORIES=1) must
 * replay against today's workflow code. A change that would break running
 * intakes fails here; such a change needs workflow versioning (patched()).
 */

const DIR = path.join(import.meta.dirname, 'histories');

/**
 * History JSON (as `handle.fetchHistory()` serialises) back to the proto.
 * fromObject rather than the SDK's historyFromJSON: with @temporalio/common and
 * @temporalio/proto each holding their own protobufjs, the latter's type check fails.
 */
function load(file: string) {
  return proto.temporal.api.history.v1.History.fromObject(JSON.parse(readFileSync(file, 'utf8')));
}

describe('intake workflow replay', () => {
  const files = readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();

  it('has committed histories for the main paths, from before and after the approval-integrity patch', () => {
    const paths = ['draft-only-approved', 'send-on-approval-sent', 'edit-stale-approve-sent', 'rejected', 'expired', 'needs-human', 'skipped-paused'];
    const after = [...paths, 'continued-at-gate'].map((p) => `approval-integrity-${p}`);
    expect(files).toEqual(expect.arrayContaining([...paths, ...after].map((p) => `${p}.json`)));
  });

  it('replays every history with the current workflow code', async () => {
    quietTemporalRuntime('ERROR');
    const histories = files.map((f) => ({ workflowId: f.replace(/\.json$/, ''), history: load(path.join(DIR, f)) }));
    const failures: string[] = [];
    for await (const result of Worker.runReplayHistories({ workflowsPath: WORKFLOWS_PATH }, histories)) {
      if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
    }
    expect(failures).toEqual([]);
  }, 120_000);
});
