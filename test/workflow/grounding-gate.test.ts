import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { createActivities } from '../../activities/index.js';
import { loadConfig } from '../../lib/config/config.js';
import { createLogger } from '../../lib/config/logger.js';
import type { Rejection } from '../../lib/domain/grounding.js';
import type { IntakeResult, LeadInput } from '../../lib/domain/prospect.js';
import type { RequestRecord } from '../../sandbox/providers/openai.js';
import type { SandboxClient } from '../../sandbox/client.js';
import type { Sandbox } from '../../sandbox/server.js';
import { quietTemporalRuntime, testDatabase, testSandbox, testTemporal, testWorker, uniqueTaskQueue } from '../helpers/stack.js';
import { auditOf, effectsOf, status, submit, uniqueLead, waitForStage } from './intake-helpers.js';

/**
 * The grounding gate end to end: real Temporal, embedded PostgreSQL, the
 * sandbox over HTTP with the real `openai` SDK. One worker runs the model
 * layer (GROUNDING_MODEL_CHECK=on), one does not (off); the sandbox plays the
 * writer and the claim checker, scripted per lead.
 */

const INVENTED = {
  subject: 'A quick question',
  // Two claims no context can hold: a call that never happened (no thread) and a figure no fact states.
  body: 'Hi Robin,\n\nFollowing up on our call last week.\n\nWe helped teams like yours cut costs by 73%.\n\nWould you be open to a 30-minute call?\n\nBest regards,\nSam',
  factsUsed: [],
};
const WRITTEN_BY_THE_MODEL = ['Following up', 'call last week', 'cut costs', '73%', 'teams like yours'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The user message's text outside its <context>…</context> block, and the block's JSON. */
function split(content: string): { outside: string; data: any } {
  const open = content.indexOf('<context>');
  const close = content.lastIndexOf('</context>');
  expect(open).toBeGreaterThanOrEqual(0);
  expect(close).toBeGreaterThan(open);
  return { outside: content.slice(0, open) + content.slice(close + '</context>'.length), data: JSON.parse(content.slice(open + '<context>'.length, close)) };
}

describe('grounding gate', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let sandbox: Sandbox;
  let sbx: SandboxClient;
  let client: Client;
  const workers: Awaited<ReturnType<typeof testWorker>>[] = [];
  const checked = uniqueTaskQueue('grounding-on');
  const unchecked = uniqueTaskQueue('grounding-off');

  beforeAll(async () => {
    quietTemporalRuntime('ERROR');
    let sb;
    [db, temporal, sb] = await Promise.all([testDatabase(), testTemporal(), testSandbox()]);
    ({ sandbox, client: sbx } = sb);
    client = temporal.client;
    const log = createLogger({ name: 'test', level: 'silent' });
    for (const [queue, mode] of [[checked, 'on'], [unchecked, 'off']] as const) {
      const config = await loadConfig({ env: {}, overrides: { SANDBOX_URL: sandbox.url, GROUNDING_MODEL_CHECK: mode } });
      expect(config.grounding.modelCheck).toBe(mode === 'on');
      workers.push(await testWorker(temporal, createActivities({ config, pool: db.pool, log }), queue));
    }
  });

  afterAll(async () => {
    for (const w of workers) await w.stop();
    await sandbox?.close();
    await temporal?.close();
    await db?.drop();
  });

  /**
   * A person HubSpot knows, at a company of their own: the company's name is
   * a fact, so the sandbox writer's draft ("Quick idea for <company>", two
   * facts verbatim) is clean, and the name marks this lead's prompts.
   */
  async function knownProspect(): Promise<LeadInput & { company: string }> {
    const id = randomUUID().slice(0, 8);
    const company = `Tessellate Freight ${id}`;
    const domain = `tessellate-${id}.example`;
    const made = await sbx.post<{ id: string }>('/_sandbox/hubspot/companies', {
      properties: { name: company, domain, description: `${company} runs cross-docking hubs for grocery chains.`, numberofemployees: '640', city: 'Rotterdam', country: 'Netherlands' },
    });
    const email = `kim@${domain}`;
    await sbx.post('/_sandbox/hubspot/contacts', {
      properties: { email, firstname: 'Kim', lastname: 'Free', jobtitle: 'Head of Operations' },
      associations: [{ type: 'companies', id: made.id, primary: true }],
    });
    return { email, name: 'Kim Free', source: 'test', company };
  }

  const result = (workflowId: string) => client.workflow.getHandle(workflowId).result() as Promise<IntakeResult>;
  const requestsFor = async (schema: string, marker: string) =>
    (await sbx.get<RequestRecord[]>('/_sandbox/openai/requests')).filter((r) => r.schema === schema && r.messages.some((m) => m.content.includes(marker)));

  it('an invented claim twice goes to a person: status, read model and HubSpot note show each rejected sentence and why; the retry prompt quotes none of it', async () => {
    const lead = uniqueLead();
    await sbx.post('/_sandbox/openai/script', { match: lead.company, schema: 'prospect_email', content: INVENTED, times: 2 });
    const { workflowId, runId } = await submit(client, unchecked, lead, { mode: 'draft_only' });
    expect(await result(workflowId)).toMatchObject({ stage: 'NEEDS_HUMAN' });

    // The status query: every rejected sentence, with its kind and why, and the same as sentences for people.
    const st = await status(client, workflowId);
    const rejections = st.grounding!.rejections;
    expect(st.grounding!.attempts).toBe(2);
    const call = rejections.find((r) => r.text.includes('call last week'));
    const figure = rejections.find((r) => r.text.includes('73%'));
    expect(call).toMatchObject({ kind: 'prior_interaction', sentence: expect.any(Number) });
    expect(figure).toMatchObject({ kind: 'figure', sentence: expect.any(Number) });
    for (const r of [call!, figure!]) {
      expect(r.reason.length).toBeGreaterThan(10);
      expect(st.grounding!.problems).toContain(`sentence ${r.sentence} “${r.text}”: ${r.reason}`);
    }
    expect(st.reason).toMatch(/^grounding: /);

    // The read model: what the API and CLI show once the workflow is gone.
    const row = (await db.pool.query('SELECT stage, reason, data FROM prospects WHERE id = $1', [workflowId])).rows[0];
    expect(row.stage).toBe('NEEDS_HUMAN');
    expect(row.data.grounding).toEqual({ attempts: 2, problems: st.grounding!.problems, rejections });
    expect(row.reason).toContain('call last week');
    const audit = (await auditOf(db.pool, workflowId)).filter((a) => a.action === 'write' || a.action === 'needs_human');
    expect(audit.map((a) => a.outcome)).toEqual(['rejected', 'rejected', 'handed_over']);
    expect(audit[2]!.details.rejections).toEqual(rejections);

    // The owner's HubSpot note lists each sentence and why.
    const fx = await effectsOf(sbx, runId);
    expect(fx.drafts).toHaveLength(0);
    expect(fx.notes).toHaveLength(1);
    const note = fx.notes[0]!.properties.hs_note_body!;
    for (const problem of st.grounding!.problems) expect(note).toContain(`<li>${esc(problem)}</li>`);

    // The second prompt: sentence numbers and our findings outside the data block, the model's words only inside it.
    const prompts = await requestsFor('prospect_email', lead.company!);
    expect(prompts).toHaveLength(2);
    const [first, retry] = prompts.map((p) => split(p.messages.find((m) => m.role === 'user')!.content));
    expect(first!.outside).not.toMatch(/previous draft/i);
    expect(first!.data.previousDraft).toBeUndefined();
    const retryOutside = retry!.outside + prompts[1]!.messages.filter((m) => m.role !== 'user').map((m) => m.content).join('\n');
    for (const written of WRITTEN_BY_THE_MODEL) expect(retryOutside).not.toContain(written);
    for (const r of rejections) expect(retry!.outside).toContain(`sentence ${r.sentence}: `);
    expect(retry!.data.previousDraft).toMatchObject({ subject: INVENTED.subject, body: INVENTED.body });
    expect(retry!.data.previousDraft.rejectedSentences).toEqual(rejections.map((r: Rejection) => ({ sentence: r.sentence, text: r.text, reason: r.reason })));
  });

  it('the model layer: a claim the checker finds no fact for rejects an otherwise clean draft; with GROUNDING_MODEL_CHECK=off the same draft passes', async () => {
    const unsupported = { claims: [{ sentence: 2, claim: 'Kim already uses Salesforce', kind: 'usage', support: 'unsupported' }] };
    const on = await knownProspect();
    const off = await knownProspect();
    await sbx.post('/_sandbox/openai/script', { match: on.company, schema: 'claim_check', content: unsupported, times: 2 });
    const offScript = await sbx.post<{ id: number }>('/_sandbox/openai/script', { match: off.company, schema: 'claim_check', content: unsupported, times: 1 });
    const [a, b] = await Promise.all([submit(client, checked, { ...on, company: undefined }, { mode: 'draft_only' }), submit(client, unchecked, { ...off, company: undefined }, { mode: 'draft_only' })]);

    expect(await result(a.workflowId)).toMatchObject({ stage: 'NEEDS_HUMAN' });
    const rejected = await status(client, a.workflowId);
    expect(rejected.grounding!.attempts).toBe(2);
    expect(rejected.grounding!.rejections).toEqual([
      { sentence: 2, text: expect.any(String), kind: 'usage', reason: 'the claim checker found no fact for “Kim already uses Salesforce”' },
    ]);
    // The deterministic layer passed both drafts: the checker was asked twice, and the writer's drafts were the sandbox's clean ones.
    expect(await requestsFor('claim_check', on.company)).toHaveLength(2);
    const writes = (await auditOf(db.pool, a.workflowId)).filter((x) => x.action === 'write');
    expect(writes.map((w) => [w.outcome, w.details.claimCheck?.claims])).toEqual([['rejected', 1], ['rejected', 1]]);
    // The checker's claim reaches the retry only inside the data block.
    const [, retry] = (await requestsFor('prospect_email', on.company)).map((p) => split(p.messages.find((m) => m.role === 'user')!.content));
    expect(retry!.outside).toContain('sentence 2: claims the prospect uses something');
    expect(retry!.outside).not.toContain('Salesforce');
    expect(JSON.stringify(retry!.data.previousDraft)).toContain('Salesforce');

    const passed = await waitForStage(client, b.workflowId, ['AWAITING_APPROVAL', 'NEEDS_HUMAN']);
    expect(passed.stage).toBe('AWAITING_APPROVAL');
    expect(passed.grounding).toEqual({ attempts: 1, problems: [], rejections: [] });
    expect(await requestsFor('claim_check', off.company)).toHaveLength(0);
    expect((await sbx.get<{ id: number }[]>('/_sandbox/openai/scripts')).map((s) => s.id)).toContain(offScript.id);
    await client.workflow.getHandle(b.workflowId).terminate('test over');
  });

  it('the model layer with the sandbox checker\'s default answer (every claim supported) passes a clean draft', async () => {
    const lead = await knownProspect();
    const { workflowId } = await submit(client, checked, { ...lead, company: undefined }, { mode: 'draft_only' });
    const st = await waitForStage(client, workflowId, ['AWAITING_APPROVAL', 'NEEDS_HUMAN']);
    expect(st.stage).toBe('AWAITING_APPROVAL');
    expect(st.grounding).toEqual({ attempts: 1, problems: [], rejections: [] });
    const [check] = await requestsFor('claim_check', lead.company);
    // The checker sees the facts and the draft's numbered sentences as data.
    const { data } = split(check!.messages.find((m) => m.role === 'user')!.content);
    expect(data.facts).toEqual(st.facts.map((f) => ({ id: f.id, text: f.text })));
    expect(data.draft.sentences[0]).toEqual({ n: 1, text: st.draft!.subject });
    const [write] = (await auditOf(db.pool, workflowId)).filter((x) => x.action === 'write');
    expect(write!.details.claimCheck).toEqual({ model: 'gpt-4o-mini', claims: Math.min(2, st.facts.length) });
    await client.workflow.getHandle(workflowId).terminate('test over');
  });
});
