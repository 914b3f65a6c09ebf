import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Client } from '@temporalio/client';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { createActivities } from '../../activities/index.js';
import { startIntake } from '../../api/services/start-intake.js';
import { ConfigError, loadConfig, type Config } from '../../lib/config/config.js';
import { createLogger } from '../../lib/config/logger.js';
import { EncryptionCodec, ENCRYPTED_ENCODING, KEY_ID_METADATA, PayloadDecryptError } from '../../lib/config/payload-codec.js';
import { DEV_PAYLOAD_KEYS_FILE, ensureDevPayloadKeys, parsePayloadKeys } from '../../lib/config/payload-keys.js';
import { payloadCodecFor } from '../../lib/config/temporal.js';
import { intakeWorkflowId, type IntakeResult, type IntakeStatus } from '../../lib/domain/prospect.js';
import type { Sandbox } from '../../sandbox/server.js';
import { approveSignal, statusQuery } from '../../workflows/intake/messages.js';
import { startProspectsApi, type ProspectsApi } from '../api/prospects-api.js';
import { TEST_FIXTURE_PAYLOAD_KEY_A, TEST_FIXTURE_PAYLOAD_KEY_B, TEST_PAYLOAD_KEYS } from '../helpers/payload-keys.js';
import { quietTemporalRuntime, testDatabase, testSandbox, testTemporal, testWorker, uniqueTaskQueue } from '../helpers/stack.js';
import { registerApprovers, waitForReadModel } from './intake-helpers.js';

/**
 * Personal data stays out of Temporal's histories: every payload the intake
 * writes (the lead's notes, the Gmail thread text it reads, the draft it
 * writes) is AES-256-GCM ciphertext there, read back only through the codec.
 * The history is read the way an operator would, with `temporal workflow show`.
 *
 * With PAYLOAD_SAVE_HISTORY=1 the encrypted run is kept for the replay test
 * (test/workflow/histories/encrypted-draft-only-approved.json).
 */

const run = promisify(execFile);
const text = (p: Payload) => Buffer.from(p.data ?? []).toString('utf8');
const json = (value: unknown): Payload => ({ metadata: { encoding: Buffer.from('json/plain') }, data: Buffer.from(JSON.stringify(value)) });

describe('the payload codec and its keys', () => {
  const a = () => new EncryptionCodec(parsePayloadKeys(TEST_FIXTURE_PAYLOAD_KEY_A));

  it('encrypts the whole payload under binary/encrypted with the key id, and decrypts it back', async () => {
    const plain = json({ notes: 'Asked about pricing for 50 seats' });
    const [sealed] = await a().encode([plain]);
    expect(Buffer.from(sealed!.metadata!.encoding!).toString()).toBe(ENCRYPTED_ENCODING);
    expect(Buffer.from(sealed!.metadata![KEY_ID_METADATA]!).toString()).toBe('test-fixture-a');
    expect(Object.keys(sealed!.metadata!)).toEqual(['encoding', KEY_ID_METADATA]);
    expect(Buffer.from(sealed!.data!).includes('pricing')).toBe(false);
    expect(Buffer.from(sealed!.data!).includes('json/plain')).toBe(false);
    const [opened] = await a().decode([sealed!]);
    expect(Buffer.from(opened!.metadata!.encoding!).toString()).toBe('json/plain');
    expect(text(opened!)).toBe(JSON.stringify({ notes: 'Asked about pricing for 50 seats' }));
    // Fresh IV each time: the same payload never encrypts to the same bytes.
    const [again] = await a().encode([plain]);
    expect(Buffer.from(again!.data!).equals(Buffer.from(sealed!.data!))).toBe(false);
  });

  it('passes payloads that were never encrypted through decode unchanged (old histories, the plain temporal CLI)', async () => {
    const plain = json({ version: 1, approver: 'ana@prospector.example' });
    expect(await a().decode([plain])).toEqual([plain]);
  });

  it('rotation: with a new key first, the old key still decrypts what it encrypted; new payloads use the new key', async () => {
    const [old] = await a().encode([json({ notes: 'before the rotation' })]);
    const rotated = new EncryptionCodec(parsePayloadKeys(`${TEST_FIXTURE_PAYLOAD_KEY_B},${TEST_FIXTURE_PAYLOAD_KEY_A}`));
    expect(text((await rotated.decode([old!]))[0]!)).toBe('{"notes":"before the rotation"}');
    const [fresh] = await rotated.encode([json({ notes: 'after' })]);
    expect(Buffer.from(fresh!.metadata![KEY_ID_METADATA]!).toString()).toBe('test-fixture-b');
    // PAYLOAD_KEY_ID picks another listed key for encryption.
    const pinned = new EncryptionCodec(parsePayloadKeys(`${TEST_FIXTURE_PAYLOAD_KEY_B},${TEST_FIXTURE_PAYLOAD_KEY_A}`, { encryptKeyId: 'test-fixture-a' }));
    expect(Buffer.from((await pinned.encode([json(1)]))[0]!.metadata![KEY_ID_METADATA]!).toString()).toBe('test-fixture-a');

    // Dropping the old key too early: the error names the key id, never key material.
    const onlyNew = new EncryptionCodec(parsePayloadKeys(TEST_FIXTURE_PAYLOAD_KEY_B));
    const failure = await onlyNew.decode([old!]).catch((err: Error) => err);
    expect(failure).toBeInstanceOf(PayloadDecryptError);
    expect((failure as Error).message).toMatch(/key "test-fixture-a", which PAYLOAD_KEYS does not hold \(it holds "test-fixture-b"\)/);
    expect((failure as Error).message).not.toContain(TEST_FIXTURE_PAYLOAD_KEY_B.split(':')[1]);
  });

  it('refuses altered ciphertext and a relabelled key id', async () => {
    const [sealed] = await a().encode([json({ notes: 'x' })]);
    const flipped = Buffer.from(sealed!.data!);
    flipped[20] ^= 1;
    await expect(a().decode([{ ...sealed!, data: flipped }])).rejects.toThrow(/failed authentication/);
    const both = new EncryptionCodec(parsePayloadKeys(`${TEST_FIXTURE_PAYLOAD_KEY_A},${TEST_FIXTURE_PAYLOAD_KEY_B}`));
    const relabelled = { ...sealed!, metadata: { ...sealed!.metadata, [KEY_ID_METADATA]: Buffer.from('test-fixture-b') } };
    await expect(both.decode([relabelled])).rejects.toThrow(/key "test-fixture-b"\) failed authentication/);
  });

  it('configuration: required in production, validated without printing key material, kept out of JSON', async () => {
    const problems = async (overrides: Record<string, string>) => {
      try {
        await loadConfig({ env: {}, overrides });
        return '';
      } catch (err) {
        if (err instanceof ConfigError) return err.message;
        throw err;
      }
    };
    expect(await problems({ PROSPECTOR_ENV: 'production' })).toMatch(/PAYLOAD_KEYS: required in production/);
    const secretish = 'k1:c2hvcnQta2V5LXZhbHVlLXRoYXQtbXVzdC1ub3QtbGVhaw==';
    const wrongSize = await problems({ PAYLOAD_KEYS: secretish });
    expect(wrongSize).toMatch(/PAYLOAD_KEYS: key "k1" must be 32 bytes in base64 .*got 34 bytes/);
    expect(wrongSize).not.toContain(secretish.slice(3));
    const garbled = await problems({ PAYLOAD_KEYS: 'no-separator-and-secret-text' });
    expect(garbled).toMatch(/PAYLOAD_KEYS: entry 1 must be "id:base64-key"/);
    expect(garbled).not.toContain('secret-text');
    expect(await problems({ PAYLOAD_KEYS: TEST_FIXTURE_PAYLOAD_KEY_A, PAYLOAD_KEY_ID: 'k9' })).toMatch(/PAYLOAD_KEY_ID: "k9" names no key in PAYLOAD_KEYS \(its ids: test-fixture-a\)/);
    expect(await problems({ PAYLOAD_KEYS: `${TEST_FIXTURE_PAYLOAD_KEY_A},${TEST_FIXTURE_PAYLOAD_KEY_A}` })).toMatch(/key id "test-fixture-a" appears twice/);

    const config = await loadConfig({ env: {}, overrides: { PAYLOAD_KEYS: `${TEST_FIXTURE_PAYLOAD_KEY_B},${TEST_FIXTURE_PAYLOAD_KEY_A}` } });
    expect(config.temporal.payloadKeys?.encryptKeyId).toBe('test-fixture-b');
    const serialised = JSON.stringify(config);
    for (const entry of [TEST_FIXTURE_PAYLOAD_KEY_A, TEST_FIXTURE_PAYLOAD_KEY_B]) expect(serialised).not.toContain(entry.split(':')[1]);
    expect(serialised).toContain('"ids":["test-fixture-b","test-fixture-a"]');
  });

  it('development: the dev stack makes one key per data directory and every process finds it there; without it nothing connects', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'payload-keys-'));
    try {
      const bare = await loadConfig({ env: {}, overrides: { DATA_DIR: dataDir } });
      expect(bare.temporal.payloadKeys).toBeUndefined();
      expect(() => payloadCodecFor(bare.temporal)).toThrow(/PAYLOAD_KEYS: not set, and no development key in DATA_DIR\/dev-payload-keys/);

      const first = await ensureDevPayloadKeys(dataDir);
      const second = await ensureDevPayloadKeys(dataDir);
      expect([first.created, second.created]).toEqual([true, false]);
      expect(first.file).toBe(path.join(dataDir, DEV_PAYLOAD_KEYS_FILE));
      const config = await loadConfig({ env: {}, overrides: { DATA_DIR: dataDir } });
      expect(config.temporal.payloadKeys?.source).toBe('development');
      expect(config.temporal.payloadKeys?.encryptKeyId).toMatch(/^dev-[0-9a-f]{6}$/);
      expect(config.temporal.payloadKeys?.encryptKeyId).toBe(first.keyring.encryptKeyId);
      // PAYLOAD_KEYS wins over the file.
      expect((await loadConfig({ env: {}, overrides: { DATA_DIR: dataDir, PAYLOAD_KEYS: TEST_PAYLOAD_KEYS } })).temporal.payloadKeys?.source).toBe('configured');
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

/** Every string in the JSON, and what the base64-looking ones decode to (read as JSON where they are). */
function readableText(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') {
    out.push(value);
    if (value.length >= 8 && /^[A-Za-z0-9+/]+={0,2}$/.test(value)) {
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      out.push(decoded);
      try {
        readableText(JSON.parse(decoded), out);
      } catch {
        /* not JSON */
      }
    }
  } else if (Array.isArray(value)) {
    for (const v of value) readableText(v, out);
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      out.push(k);
      readableText(v, out);
    }
  }
  return out;
}

/**
 * Every payload object ({metadata, data}) in a `temporal workflow show --output json`
 * document, with where it sits; search attributes are left out (never encrypted, by design).
 */
function payloadsIn(value: unknown, at = '', out: { at: string; metadata: Record<string, string> }[] = []) {
  if (Array.isArray(value)) value.forEach((v, i) => payloadsIn(v, `${at}[${i}]`, out));
  else if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if (o.metadata && typeof o.metadata === 'object' && 'encoding' in (o.metadata as object)) out.push({ at, metadata: o.metadata as Record<string, string> });
    else for (const [k, v] of Object.entries(o)) if (k !== 'searchAttributes' && k !== 'upsertWorkflowSearchAttributesEventAttributes') payloadsIn(v, `${at}.${k}`, out);
  }
  return out;
}

/** The longest lines of a text: needles that survive JSON escaping. */
const lines = (body: string, n = 2) => body.split('\n').filter((l) => l.trim().length > 20).sort((x, y) => y.length - x.length).slice(0, n);

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('an intake on the real worker, read with `temporal workflow show`', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let sandbox: Sandbox;
  let worker: Awaited<ReturnType<typeof testWorker>> | undefined;
  let api: ProspectsApi;
  let config: Config;
  const taskQueue = uniqueTaskQueue('intake-encrypted');
  const NOTES = `Budget signed off for the Q3 rollout; ask about SOC 2 evidence (ref ${Date.now().toString(36)})`;
  const THREAD_TEXT = ['Looping in Jordan, who runs sales ops', 'Could you share pricing for 50 seats'];
  const cli = () => inject('temporalBinary');
  const show = (workflowId: string, ...extra: string[]) => run(cli(), ['workflow', 'show', '--address', temporal.address, '--namespace', 'default', '--workflow-id', workflowId, '--output', 'json', ...extra], { maxBuffer: 64 * 1024 * 1024 });

  beforeAll(async () => {
    quietTemporalRuntime('ERROR');
    let sb;
    [db, temporal, sb] = await Promise.all([testDatabase(), testTemporal(), testSandbox()]);
    sandbox = sb.sandbox;
    config = await loadConfig({ env: {}, overrides: { SANDBOX_URL: sandbox.url, PAYLOAD_KEYS: TEST_PAYLOAD_KEYS } });
    await registerApprovers(db.pool, ['ana@prospector.example']);
    worker = await testWorker(temporal, createActivities({ config, pool: db.pool, log: createLogger({ name: 't', level: 'silent' }) }), taskQueue);
    api = await startProspectsApi({ config, pool: db.pool, temporal: temporal.client, taskQueue, dispatcher: { pollMs: 100 } });
  });

  afterAll(async () => {
    await api?.close();
    await worker?.stop();
    await sandbox?.close();
    await temporal?.close();
    await db?.drop();
  });

  it('holds no lead notes, thread text or draft body in clear; every payload is binary/encrypted with its key id; the codec endpoint reads them', async () => {
    // The way a lead arrives: the API stores it and its dispatcher starts the intake (with the submission in the memo).
    const submitted = await api.call('POST', '/v1/prospects', { key: await api.key(['prospects:write']), body: { email: 'dana@acme.example', name: 'Dana Ruiz', notes: NOTES } });
    expect(submitted.status).toBe(202);
    const workflowId = intakeWorkflowId('dana@acme.example');
    const { outcome } = await api.runOf(submitted.body.submissionId);
    expect(outcome).toBe('started'); // the dispatcher read its own (encrypted) memo back
    await waitForReadModel(db.pool, workflowId, ['AWAITING_APPROVAL']);
    const handle = temporal.client.workflow.getHandle(workflowId);
    const waiting = (await handle.query(statusQuery)) as IntakeStatus;
    const draftBody = waiting.draft!.body;
    expect(draftBody.length).toBeGreaterThan(80);
    await handle.signal(approveSignal, { version: 1, approver: 'ana@prospector.example', reason: 'fine' });
    expect(((await handle.result()) as IntakeResult).stage).toBe('APPROVED');

    const needles = [NOTES, ...THREAD_TEXT, ...lines(draftBody)];
    expect(needles).toHaveLength(5);
    const { stdout } = await show(workflowId);
    const history = JSON.parse(stdout) as { events: unknown[] };
    expect(history.events.length).toBeGreaterThan(20);
    const readable = readableText(history).join('\n');
    for (const needle of needles) expect(readable, `"${needle}" readable in the history`).not.toContain(needle);
    expect(stdout).not.toContain(NOTES.slice(0, 20));

    const payloads = payloadsIn(history);
    expect(payloads.length).toBeGreaterThan(20);
    // The SDK writes a patched() marker itself, outside the codec: it holds the patch id only.
    const isPatchMarker = (at: string) => /markerRecordedEventAttributes\.details\.patch-data\./.test(at);
    expect(payloads.filter((p) => isPatchMarker(p.at)).length).toBeGreaterThan(0);
    const plain = payloads.filter((p) => !isPatchMarker(p.at) && Buffer.from(p.metadata.encoding!, 'base64').toString() !== ENCRYPTED_ENCODING);
    expect(plain.map((p) => `${p.at}: ${Buffer.from(p.metadata.encoding!, 'base64').toString()}`)).toEqual([]);
    expect(new Set(payloads.filter((p) => !isPatchMarker(p.at)).map((p) => Buffer.from(p.metadata[KEY_ID_METADATA]!, 'base64').toString()))).toEqual(new Set(['test-fixture-a']));
    // By design: the workflow id and the search attributes still name the person (docs/temporal-payloads.md).
    expect(stdout).toContain('dana@acme.example');

    // An operator with a payloads:decode key reads the same history decoded, through the API's codec endpoint.
    const reader = await api.key(['payloads:decode']);
    const decoded = await show(workflowId, '--codec-endpoint', `${api.url}/v1/codec`, '--codec-auth', `Bearer ${reader}`);
    const decodedText = readableText(JSON.parse(decoded.stdout)).join('\n');
    for (const needle of needles) expect(decodedText, `"${needle}" decoded`).toContain(needle);
    // (Without a key the endpoint refuses: test/api/codec.test.ts.)

    if (process.env.PAYLOAD_SAVE_HISTORY === '1') {
      writeFileSync(path.join(import.meta.dirname, 'histories', 'encrypted-draft-only-approved.json'), `${JSON.stringify(await handle.fetchHistory())}\n`);
    }
  });

  it('control: the same reading finds the notes and the draft in a history written without the codec', async () => {
    // What the history held before this change: a worker and a client with no codec.
    const passThrough: PayloadCodec = { encode: async (p) => p, decode: async (p) => p };
    const plainQueue = uniqueTaskQueue('intake-plain');
    const plainWorker = await createPlainWorker(plainQueue, passThrough);
    try {
      const client = new Client({ connection: temporal.client.connection });
      const notes = `Plain control notes ${Date.now().toString(36)}`;
      const { workflowId } = await startIntake(client, { sender: 'sales@prospector.example', lead: { email: 'priya@initech.example', name: 'Priya Raman', notes, source: 'test' } }, { taskQueue: plainQueue });
      const deadline = Date.now() + 45_000;
      let st: IntakeStatus | undefined;
      while (Date.now() < deadline && st?.stage !== 'AWAITING_APPROVAL') {
        st = await client.workflow.getHandle(workflowId).query(statusQuery).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 150));
      }
      expect(st?.stage).toBe('AWAITING_APPROVAL');
      const readable = readableText(JSON.parse((await show(workflowId)).stdout)).join('\n');
      expect(readable).toContain(notes);
      for (const line of lines(st!.draft!.body)) expect(readable).toContain(line);
      expect(readable).not.toContain(b64(ENCRYPTED_ENCODING));
      await client.workflow.getHandle(workflowId).terminate('control done');
    } finally {
      await plainWorker.stop();
    }
  });

  async function createPlainWorker(queue: string, codec: PayloadCodec) {
    const { createWorkers } = await import('../../workers/worker.js');
    const [w] = await createWorkers({
      connection: temporal.nativeConnection,
      namespace: 'default',
      activities: createActivities({ config, pool: db.pool, log: createLogger({ name: 't', level: 'silent' }) }),
      shutdownGraceMs: 1_000,
      payloadCodec: codec,
      taskQueues: [queue],
    });
    const running = w!.run();
    return {
      async stop() {
        w!.shutdown();
        await running;
      },
    };
  }
});
