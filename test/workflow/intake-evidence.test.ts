import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { createActivities } from '../../activities/index.js';
import type { WriterContext } from '../../activities/intake/writer.js';
import { loadConfig } from '../../lib/config/config.js';
import { createLogger } from '../../lib/config/logger.js';
import type { Fact, Stage } from '../../lib/domain/prospect.js';
import { updateSettings } from '../../lib/store/settings.js';
import type { SandboxClient } from '../../sandbox/client.js';
import type { Sandbox } from '../../sandbox/server.js';
import { rejectSignal } from '../../workflows/intake/messages.js';
import { quietTemporalRuntime, testDatabase, testSandbox, testTemporal, testWorker, uniqueTaskQueue } from '../helpers/stack.js';
import { registerApprovers, submit, uniqueLead, waitForStage, type CrmObject } from './intake-helpers.js';

/**
 * Where an intake's evidence comes from, end to end (real Temporal, real
 * PostgreSQL, the sandbox over HTTP): the contact's own HubSpot company
 * association, never the lead's typed fields, plus the Gmail thread and the
 * sender's profile. The writer's input is watched on its way into the real
 * write activity.
 */

describe('intake evidence with provenance', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let sandbox: Sandbox;
  let sbx: SandboxClient;
  let client: Client;
  let worker: Awaited<ReturnType<typeof testWorker>> | undefined;
  const taskQueue = uniqueTaskQueue('evidence');
  /** Every writer context the write activity received, by workflow id. */
  const written = new Map<string, WriterContext[]>();
  const PITCH = 'Prospector drafts the first reply to a new lead in minutes, for a person to approve.';

  beforeAll(async () => {
    quietTemporalRuntime('ERROR');
    let sb;
    [db, temporal, sb] = await Promise.all([testDatabase(), testTemporal(), testSandbox()]);
    ({ sandbox, client: sbx } = sb);
    client = temporal.client;
    const config = await loadConfig({ env: {}, overrides: { SANDBOX_URL: sandbox.url } });
    await registerApprovers(db.pool, ['lee@prospector.example']);
    // Through the settings' one writer, as the API does; no re-contact window, so one person can be taken in twice.
    await updateSettings(db.pool, { senderPitch: PITCH, recontactWindowDays: 0 });
    const base = createActivities({ config, pool: db.pool, log: createLogger({ name: 'test', level: 'silent' }) });
    const activities: typeof base = {
      ...base,
      async intakeWriteDraft(stamp, input) {
        written.set(stamp.workflowId, [...(written.get(stamp.workflowId) ?? []), structuredClone(input.context)]);
        return base.intakeWriteDraft(stamp, input);
      },
    };
    worker = await testWorker(temporal, activities, taskQueue);
  });

  afterAll(async () => {
    await worker?.stop();
    await sandbox?.close();
    await temporal?.close();
    await db?.drop();
  });

  async function seedCompany(name: string, domain: string, description: string): Promise<string> {
    const made = await sbx.post<{ id: string }>('/_sandbox/hubspot/companies', {
      properties: { name, domain, description, industry: 'LOGISTICS_AND_SUPPLY_CHAIN', numberofemployees: '640', city: 'Rotterdam', country: 'Netherlands' },
    });
    return made.id;
  }

  /**
   * Facts are fixed before the draft is judged, so an intake shows them whether
   * its draft passed (AWAITING_APPROVAL) or went to a person (NEEDS_HUMAN).
   */
  const WRITTEN: Stage[] = ['AWAITING_APPROVAL', 'NEEDS_HUMAN'];

  /** The facts the intake shows and the facts every write attempt was given. */
  function everyFact(workflowId: string, shown: Fact[]): Fact[] {
    const contexts = written.get(workflowId) ?? [];
    expect(contexts.length, 'the writer ran').toBeGreaterThan(0);
    return [...shown, ...contexts.flatMap((c) => c.facts)];
  }

  it("a free-mail contact's primary HubSpot company supplies the company facts", async () => {
    const id = randomUUID().slice(0, 8);
    const companyId = await seedCompany(`Tessellate Freight ${id}`, `tessellate-${id}.example`, `Tessellate Freight ${id} runs cross-docking hubs for grocery chains.`);
    // No dots: the intake's address for a gmail.com lead drops them, and HubSpot is searched by that address.
    const email = `kimfree${id}@gmail.com`;
    await sbx.post('/_sandbox/hubspot/contacts', {
      properties: { email, firstname: 'Kim', lastname: 'Free', jobtitle: 'Head of Operations' },
      associations: [{ type: 'companies', id: companyId, primary: true }],
    });

    const { workflowId } = await submit(client, taskQueue, { email, name: 'Kim Free', source: 'test' }, { mode: 'draft_only' });
    const st = await waitForStage(client, workflowId, WRITTEN);
    expect(st.crm?.companyId).toBe(companyId);
    const companyFacts = st.facts.filter((f) => f.source === 'hubspot:company');
    expect(companyFacts).toContainEqual({ id: 'company.description', text: `Tessellate Freight ${id} runs cross-docking hubs for grocery chains.`, source: 'hubspot:company' });
    expect(companyFacts.map((f) => f.id)).toEqual(expect.arrayContaining(['company.size', 'company.industry', 'company.location']));
    // The contact existed before this intake: its title is HubSpot's, and its company is the associated record's.
    expect(st.facts).toContainEqual({ id: 'contact.title', text: `Kim Free is Head of Operations at Tessellate Freight ${id}.`, source: 'hubspot:contact' });
    // The sender's profile, including the operator's product description.
    expect(st.facts).toContainEqual({ id: 'sender.product', text: PITCH, source: 'sender' });
    expect(st.facts.find((f) => f.id === 'sender.company')?.source).toBe('sender');
    // What the writer was given is what the intake shows.
    expect(written.get(workflowId)![0]!.facts).toEqual(st.facts);
  });

  it("a subsidiary contact's primary company wins over the company owning the email's domain, and no new association is made", async () => {
    const id = randomUUID().slice(0, 8);
    const parentId = await seedCompany(`Northwind Group ${id}`, `northwind-group-${id}.example`, `Northwind Group ${id} owns regional parcel carriers.`);
    const domainCompanyId = await seedCompany(`Northwind Parcels ${id}`, `nw-parcels-${id}.example`, `Northwind Parcels ${id} delivers in the Benelux.`);
    const email = `ana@nw-parcels-${id}.example`;
    const contact = await sbx.post<{ id: string }>('/_sandbox/hubspot/contacts', {
      properties: { email, firstname: 'Ana', lastname: 'Berg' },
      associations: [{ type: 'companies', id: parentId, primary: true }],
    });

    const { workflowId } = await submit(client, taskQueue, { email, source: 'test' }, { mode: 'draft_only' });
    const st = await waitForStage(client, workflowId, WRITTEN);
    expect(st.crm?.companyId).toBe(parentId);
    expect(st.facts).toContainEqual({ id: 'company.description', text: `Northwind Group ${id} owns regional parcel carriers.`, source: 'hubspot:company' });
    expect(JSON.stringify(st.facts)).not.toContain('Benelux');
    const edges = await sbx.get<{ fromType: string; fromId: string; toId: string }[]>('/_sandbox/hubspot/associations');
    expect(edges.filter((e) => e.fromType === 'contacts' && e.fromId === contact.id).map((e) => e.toId)).not.toContain(domainCompanyId);
  });

  it("the lead's typed company and title never become a fact, in this intake or a later one for the same person", async () => {
    const typed = { company: 'Acme — promised a 90 % discount', title: 'CEO' };
    const lead = uniqueLead({ ...typed, name: 'Robin Vale' });
    const forbidden = /promised|discount|90|CEO|Acme —/;

    const first = await submit(client, taskQueue, lead, { mode: 'draft_only' });
    const st = await waitForStage(client, first.workflowId, WRITTEN);
    for (const f of everyFact(first.workflowId, st.facts)) expect(f.text).not.toMatch(forbidden);
    expect(st.facts.some((f) => f.source === 'hubspot:contact')).toBe(false);
    // The typed fields are still CRM data entry on the new contact.
    const [contact] = await sbx.get<CrmObject[]>(`/_sandbox/hubspot/contacts?email=${encodeURIComponent(lead.email)}`);
    expect(contact!.properties).toMatchObject({ company: typed.company, jobtitle: typed.title, firstname: 'Robin', lastname: 'Vale' });

    // A later intake finds that contact in HubSpot; what a lead typed into it is still not evidence.
    const handle = client.workflow.getHandle(first.workflowId);
    if (st.stage === 'AWAITING_APPROVAL') await handle.signal(rejectSignal, { approver: 'lee@prospector.example', reason: 'try again' });
    // Closed, not just in an end stage: a submission while it runs would attach to it.
    expect((await handle.result()).stage).toMatch(/^(REJECTED|NEEDS_HUMAN)$/);
    // The same form again: the typed company must not name the company in a contact fact either.
    const second = await submit(client, taskQueue, lead, { mode: 'draft_only' });
    expect(second.runId).not.toBe(first.runId);
    const again = await waitForStage(client, second.workflowId, WRITTEN);
    expect(again.history.find((h) => h.step === 'resolve')?.outcome).toBe('contact_found');
    for (const f of everyFact(second.workflowId, again.facts)) expect(f.text).not.toMatch(forbidden);
    expect(again.facts.some((f) => f.source === 'hubspot:contact')).toBe(false);
  });

  it('the latest Gmail thread becomes gmail:thread facts, numbered in order', async () => {
    // A person of this test's own (workflow ids are shared with the other suites on the one Temporal server).
    const email = `thread-${Date.now().toString(36)}@acme.example`;
    await sbx.post('/_sandbox/google/threads', {
      messages: [
        { from: email, to: 'sales@prospector.example', subject: 'Rollout question', body: 'Can the rollout start with our Columbus team?', ageDays: 3 },
        { from: 'sales@prospector.example', to: email, subject: 'Re: Rollout question', body: 'Yes, Columbus first works well.', ageDays: 2 },
      ],
    });
    const { workflowId } = await submit(client, taskQueue, { email, name: 'Robin Thread', source: 'test' }, { mode: 'draft_only' });
    const st = await waitForStage(client, workflowId, WRITTEN);
    const context = written.get(workflowId)![0]!;
    const thread = st.facts.filter((f) => f.source === 'gmail:thread');
    expect(thread.length).toBeGreaterThan(0);
    expect(thread.map((f) => f.id)).toEqual(thread.map((_, i) => `thread.${i + 1}`));
    expect(thread.map((f) => f.text)).toEqual(context.thread!.map((m) => m.text.trim()).filter(Boolean));
    // The HubSpot facts come first, unchanged.
    expect(st.facts[0]).toMatchObject({ id: 'company.description', source: 'hubspot:company' });
  });
});
