import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import proto from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { WORKFLOWS_PATH } from '../../workers/worker.js';
import { quietTemporalRuntime } from '../helpers/stack.js';
import { testDataConverter, TEST_FIXTURE_PAYLOAD_KEY_A, TEST_FIXTURE_PAYLOAD_KEY_B } from '../helpers/payload-keys.js';

/**
 * Determinism guard: histories of real intake runs (committed under
 * histories/, recorded by intake.test.ts with INTAKE_SAVE_HISTORIES=1) must
 * replay against today's workflow code. A change that would break running
 * intakes fails here; such a change needs workflow versioning (patched()).
 *
 * Payloads are encrypted (lib/config/payload-codec.ts): the encrypted-*
 * histories (recorded by payload-encryption.test.ts with
 * PAYLOAD_SAVE_HISTORY=1, under test fixture key A) replay through the codec,
 * with the keys as after a rotation (fixture key B first, A still listed); the
 * older histories hold plain payloads, which the codec passes through.
 */

/** As after a rotation: B encrypts, A (which recorded the encrypted histories) still decrypts. */
const ROTATED_KEYS = `${TEST_FIXTURE_PAYLOAD_KEY_B},${TEST_FIXTURE_PAYLOAD_KEY_A}`;

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
    expect(files).toEqual(expect.arrayContaining([...paths, ...after, 'encrypted-draft-only-approved'].map((p) => `${p}.json`)));
  });

  it('has an encrypted history: no lead notes in it, every input and result binary/encrypted under fixture key A', () => {
    const text = readFileSync(path.join(DIR, 'encrypted-draft-only-approved.json'), 'utf8');
    const history = load(path.join(DIR, 'encrypted-draft-only-approved.json'));
    const input = history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!;
    expect(Buffer.from(input.metadata!.encoding!).toString()).toBe('binary/encrypted');
    expect(Buffer.from(input.metadata!['encryption-key-id']!).toString()).toBe('test-fixture-a');
    const results = history.events!.flatMap((e) => e.activityTaskCompletedEventAttributes?.result?.payloads ?? []);
    expect(results.length).toBeGreaterThan(5);
    expect(results.every((p) => Buffer.from(p.metadata!.encoding!).toString() === 'binary/encrypted')).toBe(true);
    expect(text).not.toContain('Budget signed off');
  });

  it('cannot replay an encrypted history once its key is gone (the failure names the key)', async () => {
    quietTemporalRuntime('ERROR');
    const history = { workflowId: 'encrypted-without-its-key', history: load(path.join(DIR, 'encrypted-draft-only-approved.json')) };
    const errors: string[] = [];
    for await (const result of Worker.runReplayHistories({ workflowsPath: WORKFLOWS_PATH, dataConverter: testDataConverter(TEST_FIXTURE_PAYLOAD_KEY_B) }, [history])) {
      if (result.error) errors.push(result.error.message);
    }
    expect(errors).toEqual([expect.stringMatching(/test-fixture-a/)]);
  }, 60_000);

  it('replays every history with the current workflow code', async () => {
    quietTemporalRuntime('ERROR');
    const histories = files.map((f) => ({ workflowId: f.replace(/\.json$/, ''), history: load(path.join(DIR, f)) }));
    const failures: string[] = [];
    for await (const result of Worker.runReplayHistories({ workflowsPath: WORKFLOWS_PATH, dataConverter: testDataConverter(ROTATED_KEYS) }, histories)) {
      if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
    }
    expect(failures).toEqual([]);
  }, 120_000);
});
