import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Client } from '@hubspot/api-client';
import { FilterOperatorEnum as Op } from '@hubspot/api-client/lib/codegen/crm/contacts/index.js';
import { AssociationSpecAssociationCategoryEnum as Category } from '@hubspot/api-client/lib/codegen/crm/objects/tasks/index.js';
import { createHubspot, hubspotErrorDetails } from '../../activities/providers/hubspot.js';
import { loadConfig, type Config } from '../../lib/config/config.js';
import type { SandboxClient } from '../../sandbox/client.js';
import type { Sandbox } from '../../sandbox/server.js';
import { testSandbox } from '../helpers/stack.js';

/** The real @hubspot/api-client against the sandbox's HubSpot CRM. */
describe('HubSpot sandbox with @hubspot/api-client', () => {
  let sandbox: Sandbox;
  let control: SandboxClient;
  let cfg: Config['providers']['hubspot'];
  let hubspot: Client;

  beforeAll(async () => {
    ({ sandbox, client: control } = await testSandbox());
    cfg = (await loadConfig({ env: {}, overrides: { SANDBOX_URL: sandbox.url } })).providers.hubspot;
    hubspot = createHubspot(cfg);
  });
  afterAll(() => sandbox?.close());
  beforeEach(() => control.reset('hubspot'));

  const byEmail = (email: string) =>
    hubspot.crm.contacts.searchApi.doSearch({
      filterGroups: [{ filters: [{ propertyName: 'email', operator: Op.Eq, value: email }] }],
      properties: ['email', 'firstname', 'hs_timezone'],
      limit: 1,
    });

  /** The SDK's ApiException for a call that must fail. */
  const failure = async (call: Promise<unknown>) => {
    const err = await call.then(
      () => undefined,
      (e: unknown) => e as { code: number; body: Record<string, unknown>; headers: Record<string, string> },
    );
    expect(err, 'the call should have failed').toBeDefined();
    return err!;
  };

  const taskInput = (key: string, contactId: string) => ({
    properties: {
      hs_task_subject: 'Review and send: intro to Jane',
      hs_task_body: 'Draft waiting in Gmail',
      hs_timestamp: '2025-03-03T09:00:00Z',
      hs_task_status: 'NOT_STARTED',
      hs_task_priority: 'HIGH',
      hubspot_owner_id: '75000001',
      prospector_key: key,
    },
    associations: [{ to: { id: contactId }, types: [{ associationCategory: Category.HubspotDefined, associationTypeId: 204 }] }],
  });

  it('finds a known contact by email whatever its case, and nobody for an unknown lead', async () => {
    const found = await byEmail('Jane.Doe@ACME.example');
    expect(found.total).toBe(1);
    expect(found.results[0]!.id).toBe('2001');
    expect(found.results[0]!.properties).toMatchObject({ email: 'jane.doe@acme.example', firstname: 'Jane', hs_timezone: 'america_slash_new_york', hs_object_id: '2001' });
    expect(found.results[0]!.createdAt).toBeInstanceOf(Date);

    const missing = await byEmail('new.lead@umbrella.example');
    expect(missing.total).toBe(0);
    expect(missing.results).toEqual([]);
  });

  it('creates a contact, and a second one with the same email is a 409 naming the existing id', async () => {
    const created = await hubspot.crm.contacts.basicApi.create({ properties: { email: 'New.Lead@Umbrella.example', firstname: 'Nia' } });
    expect(created.id).toMatch(/^\d+$/);
    expect(created.properties).toMatchObject({ email: 'new.lead@umbrella.example', hs_object_id: created.id, hs_email_domain: 'umbrella.example' });
    expect(created.properties.createdate).toBeTruthy();
    expect((await byEmail('new.lead@umbrella.example')).results[0]!.id).toBe(created.id);

    const dup = await failure(hubspot.crm.contacts.basicApi.create({ properties: { email: 'new.lead@umbrella.example' } }));
    expect(dup.code).toBe(409);
    expect(dup.body).toMatchObject({ category: 'CONFLICT', message: `Contact already exists. Existing ID: ${created.id}` });
  });

  it('finds a company by domain', async () => {
    const search = (domain: string) =>
      hubspot.crm.companies.searchApi.doSearch({
        filterGroups: [{ filters: [{ propertyName: 'domain', operator: Op.Eq, value: domain }] }],
        properties: ['name', 'domain'],
      });
    const acme = await search('acme.example');
    expect(acme.total).toBe(1);
    expect(acme.results[0]).toMatchObject({ id: '1001', properties: { name: 'Acme Corp', domain: 'acme.example' } });
    expect((await search('umbrella.example')).total).toBe(0);
  });

  it('associates a contact with a company by default type and reads it back both ways', async () => {
    const contact = await hubspot.crm.contacts.basicApi.create({ properties: { email: 'wile@acme.example' } });
    const made = await hubspot.crm.associations.v4.basicApi.createDefault('contacts', contact.id, 'companies', '1001');
    expect(made.status).toBe('COMPLETE');
    expect(made.results.map((r) => r.associationSpec.associationTypeId).sort()).toEqual([279, 280]);

    const companies = await hubspot.crm.associations.v4.basicApi.getPage('contacts', contact.id, 'companies');
    expect(companies.results).toHaveLength(1);
    // The v4 API answers with numeric ids, whatever the SDK's types say.
    expect(Number(companies.results[0]!.toObjectId)).toBe(1001);
    expect(companies.results[0]!.associationTypes).toEqual([{ category: 'HUBSPOT_DEFINED', typeId: 279, label: null }]);
    const contacts = await hubspot.crm.associations.v4.basicApi.getPage('companies', '1001', 'contacts');
    expect(contacts.results.map((r) => String(r.toObjectId))).toContain(contact.id);

    const read = await hubspot.crm.contacts.basicApi.getById(contact.id, ['email'], undefined, ['companies']);
    expect(read.associations?.companies?.results).toEqual([{ id: '1001', type: 'contact_to_company_unlabeled' }]);
  });

  it('serves the Primary contact→company association with its type, for fixtures and seeded contacts alike', async () => {
    const jane = await hubspot.crm.associations.v4.basicApi.getPage('contacts', '2001', 'companies');
    expect(jane.results.map((r) => [Number(r.toObjectId), r.associationTypes.map((t) => [t.typeId, t.label])])).toEqual([[1001, [[1, 'Primary'], [279, null]]]]);

    const seeded = await control.post<{ id: string }>('/_sandbox/hubspot/contacts', {
      properties: { email: 'kim.free@gmail.com' },
      associations: [{ type: 'companies', id: '1003' }, { type: 'companies', id: '1002', primary: true }],
    });
    const page = await hubspot.crm.associations.v4.basicApi.getPage('contacts', seeded.id, 'companies');
    const byId = new Map(page.results.map((r) => [String(r.toObjectId), r.associationTypes.map((t) => t.typeId).sort((a, b) => a - b)]));
    expect(Object.fromEntries(byId)).toEqual({ '1002': [1, 279], '1003': [279] });
    const back = await hubspot.crm.associations.v4.basicApi.getPage('companies', '1002', 'contacts');
    expect(back.results.find((r) => String(r.toObjectId) === seeded.id)?.associationTypes.map((t) => t.label)).toContain('Primary');
  });

  it('creates a task for the contact with a custom key, finds exactly it by that key, and completes it', async () => {
    await hubspot.crm.objects.tasks.basicApi.create(taskInput('intake-other', '2002'));
    const task = await hubspot.crm.objects.tasks.basicApi.create(taskInput('intake-jane-1', '2001'));
    expect(task.properties).toMatchObject({ hs_task_status: 'NOT_STARTED', prospector_key: 'intake-jane-1', hs_timestamp: '2025-03-03T09:00:00.000Z' });

    const found = await hubspot.crm.objects.tasks.searchApi.doSearch({
      filterGroups: [{ filters: [{ propertyName: 'prospector_key', operator: Op.Eq, value: 'intake-jane-1' }] }],
      properties: ['hs_task_subject', 'hs_task_status', 'prospector_key'],
    });
    expect(found.total).toBe(1);
    expect(found.results.map((r) => r.id)).toEqual([task.id]);
    expect(found.results[0]!.properties.hs_task_subject).toBe('Review and send: intro to Jane');

    const [stored] = await control.get(`/_sandbox/hubspot/tasks?prospector_key=intake-jane-1`);
    expect(stored.associations).toEqual({ contacts: ['2001'] });

    const done = await hubspot.crm.objects.tasks.basicApi.update(task.id, { properties: { hs_task_status: 'COMPLETED' } });
    expect(done.properties.hs_task_status).toBe('COMPLETED');
    expect(done.properties.hs_task_completion_date).toBeTruthy();
    const reread = await hubspot.crm.objects.tasks.basicApi.getById(task.id, ['hs_task_status', 'prospector_key'], undefined, ['contacts']);
    expect(reread.properties).toMatchObject({ hs_task_status: 'COMPLETED', prospector_key: 'intake-jane-1' });
    expect(reread.associations?.contacts?.results).toEqual([{ id: '2001', type: 'task_to_contact' }]);
  });

  it('creates a note associated with the contact and the company', async () => {
    const note = await hubspot.crm.objects.notes.basicApi.create({
      properties: { hs_note_body: 'Draft created; review at /inbox/1', hs_timestamp: String(Date.UTC(2025, 2, 3)), prospector_key: 'intake-jane-1' },
      associations: [
        { to: { id: '2001' }, types: [{ associationCategory: Category.HubspotDefined, associationTypeId: 202 }] },
        { to: { id: '1001' }, types: [{ associationCategory: Category.HubspotDefined, associationTypeId: 190 }] },
      ],
    });
    expect(note.properties.hs_timestamp).toBe('2025-03-03T00:00:00.000Z');
    const [stored] = await control.get(`/_sandbox/hubspot/notes?prospector_key=intake-jane-1`);
    expect(stored.associations).toEqual({ contacts: ['2001'], companies: ['1001'] });
    const onCompany = await hubspot.crm.associations.v4.basicApi.getPage('companies', '1001', 'notes');
    expect(onCompany.results.map((r) => String(r.toObjectId))).toEqual([note.id]);
  });

  it('lists owners and finds one by email', async () => {
    const all = await hubspot.crm.owners.ownersApi.getPage();
    expect(all.results.map((o) => o.email)).toEqual(['sales@prospector.example', 'ava.ops@prospector.example']);
    const sam = await hubspot.crm.owners.ownersApi.getPage('sales@prospector.example');
    expect(sam.results).toHaveLength(1);
    expect(sam.results[0]).toMatchObject({ id: '75000001', firstName: 'Sam', type: 'PERSON', archived: false });
  });

  it('searches with OR groups, IN, CONTAINS_TOKEN, ranges, sorting and paging like HubSpot', async () => {
    const search = hubspot.crm.contacts.searchApi;
    const acmeOrGlobex = await search.doSearch({
      filterGroups: [
        { filters: [{ propertyName: 'email', operator: Op.ContainsToken, value: '*@acme.example' }] },
        { filters: [{ propertyName: 'lifecyclestage', operator: Op.In, values: ['lead'] }, { propertyName: 'email', operator: Op.Neq, value: 'morgan.lee@freelance.example' }] },
      ],
      sorts: [{ propertyName: 'createdate', direction: 'DESCENDING' } as unknown as string],
      properties: ['email'],
      limit: 1,
    });
    expect(acmeOrGlobex.total).toBe(2);
    expect(acmeOrGlobex.results.map((r) => r.id)).toEqual(['2002']);
    expect(acmeOrGlobex.paging?.next?.after).toBe('1');

    const since = await search.doSearch({
      filterGroups: [{ filters: [{ propertyName: 'createdate', operator: Op.Gte, value: String(Date.parse('2024-07-01T00:00:00Z')) }, { propertyName: 'hubspot_owner_id', operator: Op.NotHasProperty }] }],
      after: '0',
    });
    expect(since.results.map((r) => r.id)).toEqual(['2003', '2004']);
    expect(since.paging).toBeUndefined();
  });

  it('rejects unknown properties and a missing token in HubSpot’s error shapes', async () => {
    const bad = await failure(hubspot.crm.objects.tasks.basicApi.create({ properties: { hs_timestamp: '2025-03-03T09:00:00Z', favourite_colour: 'teal' } }));
    expect(bad.code).toBe(400);
    expect(bad.body.category).toBe('VALIDATION_ERROR');
    expect(String(bad.body.message)).toContain('Property \\"favourite_colour\\" does not exist');

    const anonymous = createHubspot({ ...cfg, accessToken: '' });
    const denied = await failure(anonymous.crm.owners.ownersApi.getPage());
    expect(denied.code).toBe(401);
    expect(denied.body.category).toBe('INVALID_AUTHENTICATION');
  });

  it('surfaces an injected 429 with its policy name and Retry-After', async () => {
    await control.addFaults({ provider: 'hubspot', kind: 'rate_limit', match: 'contacts/search', retryAfterSeconds: 3, count: 1 });
    const err = await failure(byEmail('jane.doe@acme.example'));
    expect(err.code).toBe(429);
    expect(err.headers['x-hubspot-ratelimit-remaining']).toBe('0');
    expect(err.body).toMatchObject({ status: 'error', errorType: 'RATE_LIMIT', policyName: 'TEN_SECONDLY_ROLLING', message: 'You have reached your ten_secondly_rolling limit.' });
    expect(hubspotErrorDetails(err)).toMatchObject({ status: 429, policyName: 'TEN_SECONDLY_ROLLING', category: 'RATE_LIMIT', retryAfterSeconds: 3 });
    expect((await byEmail('jane.doe@acme.example')).total).toBe(1);
  });

  it('surfaces an injected 5xx with its status', async () => {
    await control.addFaults({ provider: 'hubspot', kind: 'error', status: 503, match: 'POST /hubspot/crm/v3/objects/companies/search', count: 1 });
    const err = await failure(hubspot.crm.companies.searchApi.doSearch({ filterGroups: [] }));
    expect(err.code).toBe(503);
    expect(err.body.category).toBe('INTERNAL_ERROR');
    expect(hubspotErrorDetails(err)?.correlationId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('apply_then_fail on task create leaves the task in HubSpot while the SDK throws', async () => {
    await control.addFaults({ provider: 'hubspot', kind: 'apply_then_fail', match: 'POST /hubspot/crm/v3/objects/tasks', count: 1 });
    const err = await failure(hubspot.crm.objects.tasks.basicApi.create(taskInput('intake-lost-answer', '2001')));
    expect(err.code).toBe(500);
    const stored = await control.get(`/_sandbox/hubspot/tasks?prospector_key=intake-lost-answer`);
    expect(stored).toHaveLength(1);
    expect(stored[0].associations).toEqual({ contacts: ['2001'] });
  });
});
