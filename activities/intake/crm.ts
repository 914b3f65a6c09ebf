import type { Client } from '@hubspot/api-client';
import type { Pool } from '../../lib/store/db.js';
import { effectKey, type Fact } from '../../lib/domain/prospect.js';
import { call, providerFailure, statusOf } from '../providers/failures.js';
import { findEffect, recordEffect } from '../../lib/store/effects.js';
import { hubspotErrorDetails } from '../providers/hubspot.js';
import type { ScreenedLead } from './screening.js';

/**
 * HubSpot side of the intake (steps 2 and 7): find or create the contact,
 * find its company (the contact's primary company in HubSpot, else by email
 * domain, then associated), and write the review task and notes exactly once
 * each.
 *
 * Exactly once: every task/note carries `prospector_key` (a custom property)
 * and its id is kept in our database under that key. Before creating, we look
 * in our database, then read HubSpot by `idProperty=prospector_key` (a direct
 * read, not the search index, which lags writes by seconds), then search.
 * On a live portal make `prospector_key` a unique-value property so the direct
 * read works; without it the search fallback is used.
 */

export interface CrmPerson {
  id: string;
  created: boolean;
  /**
   * The record's name, company and title were written by us from what a lead
   * typed (this intake or an earlier one): they address the person and are
   * never evidence.
   */
  fromLead?: boolean;
  firstName?: string;
  lastName?: string;
  jobTitle?: string;
  timeZone?: string;
  ownerId?: string;
}

export interface CrmCompany {
  id: string;
  name?: string;
  domain?: string;
  description?: string;
  industry?: string;
  employees?: number;
  city?: string;
  country?: string;
  ownerId?: string;
  /** How we found it: the contact's own company association in HubSpot, or the email domain. */
  via?: 'association' | 'domain';
}

export interface CrmOwner {
  id: string;
  email?: string;
  name?: string;
}

export interface ResolvedCrm {
  contact: CrmPerson;
  company?: CrmCompany;
  owner?: CrmOwner;
  /** The sender's display name, from the HubSpot owner with the sender's address. */
  senderName?: string;
  facts: Fact[];
}

/** Free-mail domains never map to a company. */
const FREE_MAIL = new Set(['gmail.com', 'yahoo.com', 'outlook.com', 'hotmail.com', 'live.com', 'icloud.com', 'me.com', 'aol.com', 'proton.me', 'protonmail.com', 'gmx.com', 'yandex.com', 'mail.com']);

const CONTACT_PROPS = ['email', 'firstname', 'lastname', 'jobtitle', 'company', 'hs_timezone', 'hubspot_owner_id'];
const COMPANY_PROPS = ['name', 'domain', 'description', 'industry', 'numberofemployees', 'city', 'country', 'hubspot_owner_id'];

/** HubSpot-defined association type ids (contactToPrimaryCompany is the "Primary" label). */
const ASSOC = { contactToPrimaryCompany: 1, taskToContact: 204, taskToCompany: 192, noteToContact: 202, noteToCompany: 190 } as const;

/** Pages of a contact's company associations read before settling for the first one (500 each). */
const MAX_ASSOCIATION_PAGES = 4;

/** Marks a HubSpot contact whose properties we wrote from what a lead typed (see `contactForLead`). */
const leadTypedKey = (contactId: string) => `hubspot-contact:${contactId}:lead-typed`;

export type LeadForCrm = Pick<ScreenedLead, 'email' | 'domain' | 'name' | 'company' | 'title' | 'phone'>;

export function createCrmRecords(hubspot: Client, pool: Pool) {
  let owners: { at: number; list: CrmOwner[] } | undefined;

  async function allOwners(): Promise<CrmOwner[]> {
    if (owners && Date.now() - owners.at < 300_000) return owners.list;
    const page = await call('hubspot', 'owners.getPage', () => hubspot.crm.owners.ownersApi.getPage(undefined, undefined, 100));
    const list = page.results.map((o) => ({ id: String(o.id), email: o.email ?? undefined, name: [o.firstName, o.lastName].filter(Boolean).join(' ') || undefined }));
    owners = { at: Date.now(), list };
    return list;
  }

  async function findContact(email: string) {
    const found = await call('hubspot', 'contacts.search', () =>
      hubspot.crm.contacts.searchApi.doSearch({
        filterGroups: [{ filters: [{ propertyName: 'email', operator: 'EQ' as never, value: email }] }],
        properties: CONTACT_PROPS,
        limit: 1,
      }),
    );
    return found.results[0];
  }

  /** Creates the contact; a 409 (it exists, e.g. our own earlier attempt) yields the existing one. */
  async function createContact(lead: LeadForCrm) {
    const [firstname, ...rest] = (lead.name ?? '').split(/\s+/).filter(Boolean);
    const properties: Record<string, string> = { email: lead.email, lifecyclestage: 'lead' };
    if (firstname) properties.firstname = firstname;
    if (rest.length) properties.lastname = rest.join(' ');
    if (lead.company) properties.company = lead.company;
    if (lead.title) properties.jobtitle = lead.title;
    if (lead.phone) properties.phone = lead.phone;
    try {
      const created = await hubspot.crm.contacts.basicApi.create({ properties, associations: [] });
      return { contact: created, created: true };
    } catch (err) {
      const details = hubspotErrorDetails(err);
      const existing = details?.status === 409 ? /Existing ID: (\d+)/.exec(details.message ?? '')?.[1] : undefined;
      if (!existing) throw providerFailure('hubspot', 'contacts.create', err);
      const contact = await call('hubspot', 'contacts.getById', () => hubspot.crm.contacts.basicApi.getById(existing, CONTACT_PROPS));
      return { contact, created: false };
    }
  }

  /**
   * The contact's company as HubSpot links it: the association labelled
   * Primary, else the first associated company. This is how a contact at a
   * free-mail address, or at a subsidiary's domain, still has its company.
   */
  async function associatedCompanyId(contactId: string): Promise<string | undefined> {
    let first: string | undefined;
    let after: string | undefined;
    for (let page = 0; page < MAX_ASSOCIATION_PAGES; page++) {
      const found = await call('hubspot', 'associations.getPage', () => hubspot.crm.associations.v4.basicApi.getPage('contacts', contactId, 'companies', after, 500));
      for (const link of found.results) {
        const id = String(link.toObjectId);
        const primary = link.associationTypes.some((t) => String(t.category) === 'HUBSPOT_DEFINED' && (t.typeId === ASSOC.contactToPrimaryCompany || t.label === 'Primary'));
        if (primary) return id;
        first ??= id;
      }
      after = found.paging?.next?.after;
      if (!after) break;
    }
    return first;
  }

  /** A company by id; undefined when HubSpot no longer has it (an association to an archived company). */
  async function companyById(id: string): Promise<CrmCompany | undefined> {
    try {
      return companyView(await hubspot.crm.companies.basicApi.getById(id, COMPANY_PROPS), 'association');
    } catch (err) {
      if (statusOf('hubspot', err) === 404) return undefined;
      throw providerFailure('hubspot', 'companies.getById', err);
    }
  }

  /** The company whose domain is the email's; a free-mail domain never maps to one. */
  async function companyByDomain(domain: string): Promise<CrmCompany | undefined> {
    if (FREE_MAIL.has(domain)) return undefined;
    const found = await call('hubspot', 'companies.search', () =>
      hubspot.crm.companies.searchApi.doSearch({
        filterGroups: [{ filters: [{ propertyName: 'domain', operator: 'EQ' as never, value: domain }] }],
        properties: COMPANY_PROPS,
        limit: 1,
      }),
    );
    const c = found.results[0];
    return c ? companyView(c, 'domain') : undefined;
  }

  /**
   * The contact for this lead, found or created. Before creating one from the
   * lead's typed fields we record that we are about to, and after, which
   * contact it is, so this intake's retries (the create's answer lost, the
   * search index not yet showing it) and every later intake know the record's
   * name, company and title came from a lead. A contact found when an earlier
   * attempt of this intake had asked for a create counts as ours: HubSpot
   * cannot tell us otherwise, and taking lead text for evidence is the worse
   * mistake.
   */
  async function contactForLead(lead: LeadForCrm, intakeKey: string) {
    const attemptKey = effectKey(intakeKey, 'contact');
    const earlierAttempt = await findEffect(pool, attemptKey);
    const existing = await findContact(lead.email);
    let found: { contact: NonNullable<typeof existing>; created: boolean };
    if (existing) {
      found = { contact: existing, created: false };
    } else {
      if (!earlierAttempt) await recordEffect(pool, intakeKey, attemptKey, 'contact', 'pending');
      found = await createContact(lead);
    }
    if (found.created || earlierAttempt) {
      await recordEffect(pool, intakeKey, leadTypedKey(found.contact.id), 'contact', found.contact.id);
      await recordEffect(pool, intakeKey, attemptKey, 'contact', found.contact.id, {}, { replace: true });
    }
    const fromLead = Boolean(await findEffect(pool, leadTypedKey(found.contact.id)));
    return { ...found, fromLead };
  }

  /**
   * Step 2: the contact (found or created), its company (the contact's own
   * association first, then the email domain, which is then associated), and
   * the owner.
   */
  async function resolve(lead: LeadForCrm, senderEmail: string, intakeKey: string): Promise<ResolvedCrm> {
    const { contact, created, fromLead } = await contactForLead(lead, intakeKey);
    const p = contact.properties;
    const person: CrmPerson = {
      id: contact.id,
      created,
      fromLead,
      firstName: p.firstname ?? undefined,
      lastName: p.lastname ?? undefined,
      jobTitle: p.jobtitle ?? undefined,
      timeZone: hubspotTimeZone(p.hs_timezone ?? undefined),
      ownerId: p.hubspot_owner_id ?? undefined,
    };
    const associatedId = await associatedCompanyId(person.id);
    let company = associatedId ? await companyById(associatedId) : undefined;
    if (!company) {
      company = await companyByDomain(lead.domain);
      // Only a company found by domain is new to this contact. Idempotent on HubSpot's side: the same pair twice is one association.
      const id = company?.id;
      if (id) await call('hubspot', 'associations.createDefault', () => hubspot.crm.associations.v4.basicApi.createDefault('contacts', person.id, 'companies', id));
    }
    const list = await allOwners();
    const sender = list.find((o) => o.email?.toLowerCase() === senderEmail.toLowerCase());
    const ownerId = person.ownerId ?? company?.ownerId ?? sender?.id;
    const owner = ownerId ? (list.find((o) => o.id === ownerId) ?? { id: ownerId }) : undefined;
    return { contact: person, company, owner, senderName: sender?.name, facts: crmFacts(person, company) };
  }

  /** Finds the object holding `prospector_key = key`: our database, a direct read, then search. */
  async function findByKey(type: 'tasks' | 'notes', key: string): Promise<string | undefined> {
    const known = await findEffect(pool, key);
    if (known) return known.external_id;
    const api = type === 'tasks' ? hubspot.crm.objects.tasks : hubspot.crm.objects.notes;
    try {
      const found = await api.basicApi.getById(key, ['prospector_key'], undefined, undefined, false, 'prospector_key');
      return found.id;
    } catch (err) {
      const status = statusOf('hubspot', err);
      // 404: not there. 400: the portal does not allow idProperty on it; fall back to search.
      if (status === 404) return undefined;
      if (status !== 400) throw providerFailure('hubspot', `${type}.getById`, err);
    }
    const found = await call('hubspot', `${type}.search`, () =>
      api.searchApi.doSearch({ filterGroups: [{ filters: [{ propertyName: 'prospector_key', operator: 'EQ' as never, value: key }] }], properties: ['prospector_key'], limit: 1 }),
    );
    return found.results[0]?.id;
  }

  async function ensure(
    type: 'tasks' | 'notes',
    intakeKey: string,
    key: string,
    properties: Record<string, string>,
    links: { contactId: string; companyId?: string },
  ): Promise<{ id: string; created: boolean }> {
    const existing = await findByKey(type, key);
    if (existing) {
      await recordEffect(pool, intakeKey, key, type, existing);
      return { id: existing, created: false };
    }
    const api = type === 'tasks' ? hubspot.crm.objects.tasks : hubspot.crm.objects.notes;
    const [toContact, toCompany] = type === 'tasks' ? [ASSOC.taskToContact, ASSOC.taskToCompany] : [ASSOC.noteToContact, ASSOC.noteToCompany];
    const associations = [
      { to: { id: links.contactId }, types: [{ associationCategory: 'HUBSPOT_DEFINED' as never, associationTypeId: toContact }] },
      ...(links.companyId ? [{ to: { id: links.companyId }, types: [{ associationCategory: 'HUBSPOT_DEFINED' as never, associationTypeId: toCompany }] }] : []),
    ];
    const created = await call('hubspot', `${type}.create`, () => api.basicApi.create({ properties: { ...properties, prospector_key: key }, associations }));
    await recordEffect(pool, intakeKey, key, type, created.id);
    return { id: created.id, created: true };
  }

  return {
    resolve,

    /** Step 7: the owner's "review and send" task, once per intake. */
    ensureTask(intakeKey: string, key: string, task: { subject: string; body: string; dueAt: string; ownerId?: string; contactId: string; companyId?: string }) {
      return ensure(
        'tasks',
        intakeKey,
        key,
        {
          hs_task_subject: task.subject.slice(0, 250),
          hs_task_body: task.body,
          hs_timestamp: task.dueAt,
          hs_task_status: 'NOT_STARTED',
          hs_task_type: 'EMAIL',
          hs_task_priority: 'HIGH',
          ...(task.ownerId ? { hubspot_owner_id: task.ownerId } : {}),
        },
        task,
      );
    },

    /** A note on the contact (and company), once per key. */
    ensureNote(intakeKey: string, key: string, note: { body: string; at: string; ownerId?: string; contactId: string; companyId?: string }) {
      return ensure('notes', intakeKey, key, { hs_note_body: note.body, hs_timestamp: note.at, ...(note.ownerId ? { hubspot_owner_id: note.ownerId } : {}) }, note);
    },

    /** Closes the task (setting COMPLETED twice is harmless). */
    async completeTask(taskId: string): Promise<void> {
      await call('hubspot', 'tasks.update', () => hubspot.crm.objects.tasks.basicApi.update(taskId, { properties: { hs_task_status: 'COMPLETED' } }));
    },
  };
}

export type CrmRecords = ReturnType<typeof createCrmRecords>;

/** Our view of a HubSpot company record. */
function companyView(c: { id: string; properties: Record<string, string | null> }, via: CrmCompany['via']): CrmCompany {
  const p = c.properties;
  const employees = Number(p.numberofemployees);
  return {
    id: c.id,
    name: p.name ?? undefined,
    domain: p.domain ?? undefined,
    description: p.description ?? undefined,
    industry: p.industry ?? undefined,
    employees: Number.isFinite(employees) && employees > 0 ? employees : undefined,
    city: p.city ?? undefined,
    country: p.country ?? undefined,
    ownerId: p.hubspot_owner_id ?? undefined,
    via,
  };
}

/** HubSpot stores time zones as e.g. `america_slash_new_york`. */
export function hubspotTimeZone(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const zone = value
    .split('_slash_')
    .map((part) => part.split('_').map((w) => (w.length <= 2 && /^[a-z]+$/.test(w) && w !== 'of' ? w.toUpperCase() : w.charAt(0).toUpperCase() + w.slice(1))).join('_'))
    .join('/');
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return zone;
  } catch {
    return undefined;
  }
}

const INDUSTRY_WORDS = (code: string) => code.toLowerCase().replace(/_/g, ' ');

/**
 * Facts the writer may use from HubSpot. The rule: a fact is built only from
 * what HubSpot holds in the company record and in a contact record whose
 * properties did not come from a lead. What a lead typed (name, company,
 * title, notes) may be written to HubSpot as a new contact's properties, which
 * is data entry, but it never comes back as evidence: a contact we made from
 * lead data (`fromLead`) gives no contact facts, and the company name in a
 * contact fact is the company record's, never the lead's or the contact's
 * free-text `company` property.
 */
export function crmFacts(person: CrmPerson, company: CrmCompany | undefined): Fact[] {
  const facts: Fact[] = [];
  const companyName = company?.name;
  if (company?.description) facts.push({ id: 'company.description', text: company.description.trim(), source: 'hubspot:company' });
  if (company?.name && company.employees) facts.push({ id: 'company.size', text: `${company.name} has about ${company.employees} employees.`, source: 'hubspot:company' });
  if (company?.name && company.industry) facts.push({ id: 'company.industry', text: `${company.name} works in ${INDUSTRY_WORDS(company.industry)}.`, source: 'hubspot:company' });
  if (company?.name && company.city) {
    facts.push({ id: 'company.location', text: `${company.name} is based in ${[company.city, company.country].filter(Boolean).join(', ')}.`, source: 'hubspot:company' });
  }
  const fullName = [person.firstName, person.lastName].filter(Boolean).join(' ');
  if (person.jobTitle && fullName && !person.created && !person.fromLead) {
    facts.push({ id: 'contact.title', text: companyName ? `${fullName} is ${person.jobTitle} at ${companyName}.` : `${fullName} is ${person.jobTitle}.`, source: 'hubspot:contact' });
  }
  return facts;
}
