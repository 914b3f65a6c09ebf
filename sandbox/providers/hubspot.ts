import { randomUUID } from 'node:crypto';
import type { Request, Response, Router } from 'express';
import fixture from '../fixtures/hubspot.json' with { type: 'json' };
import type { ErrorKind, ProviderContext, ProviderModule, WireError } from '../types.js';

/**
 * HubSpot CRM stand-in: the paths @hubspot/api-client 13.5.0 calls, under `/hubspot`
 * (the SDK's basePath is `${SANDBOX_URL}/hubspot`; it appends e.g. `/crm/v3/objects/contacts`).
 *
 * Wire API (Bearer token required; any non-empty token is accepted):
 *   POST   /hubspot/crm/v3/objects/{type}                       basicApi.create        → 201 (body: properties, associations[])
 *   GET    /hubspot/crm/v3/objects/{type}                       basicApi.getPage       → 200 (limit ≤ 100, after, properties, associations)
 *   GET    /hubspot/crm/v3/objects/{type}/{id}                  basicApi.getById       → 200 (properties, associations, archived, idProperty)
 *   PATCH  /hubspot/crm/v3/objects/{type}/{id}                  basicApi.update        → 200 (idProperty supported)
 *   DELETE /hubspot/crm/v3/objects/{type}/{id}                  basicApi.archive       → 204
 *   POST   /hubspot/crm/v3/objects/{type}/search                searchApi.doSearch     → 200 {total, results, paging?}
 *   PUT    /hubspot/crm/v4/objects/{from}/{id}/associations/default/{to}/{toId}   associations.v4.basicApi.createDefault → 200
 *   PUT    /hubspot/crm/v4/objects/{from}/{id}/associations/{to}/{toId}           associations.v4.basicApi.create        → 201
 *   DELETE /hubspot/crm/v4/objects/{from}/{id}/associations/{to}/{toId}           associations.v4.basicApi.archive       → 204
 *   GET    /hubspot/crm/v4/objects/{from}/{id}/associations/{to}                  associations.v4.basicApi.getPage       → 200
 *   GET    /hubspot/crm/v3/owners/  and  /hubspot/crm/v3/owners/{ownerId}         owners.ownersApi.getPage / getById
 *   GET    /hubspot/crm/v3/properties/{type}[/{name}], POST /hubspot/crm/v3/properties/{type}   properties.coreApi
 * {type} is contacts | companies | tasks | notes (singular names and ids 0-1, 0-2, 0-27, 0-46 work too).
 *
 * Behaviour kept from HubSpot: contact emails are unique (case-insensitive, stored lower-case; a duplicate
 * create/update is 409 CONFLICT "Contact already exists. Existing ID: <id>"); unknown or read-only properties,
 * bad enum options, bad owner ids and a missing hs_timestamp on tasks/notes are 400 VALIDATION_ERROR naming the
 * property; property values are always strings; reads return a default property set unless `properties` is
 * given (requested-but-unset ones come back null); search is limited to 200 per page and 10,000 in total;
 * v4 association reads return numeric `toObjectId`s like the real API. Rate-limit headers ride on every answer.
 *
 * Control routes (under /_sandbox/hubspot):
 *   GET  /contacts | /companies | /tasks | /notes   objects with `associations: {<type>: [ids]}`; any query
 *                                                  parameter other than `archived=true` filters by property equality
 *                                                  (e.g. /tasks?prospector_key=abc)
 *   POST /contacts | /companies | /tasks | /notes   seed one object as-is: {id?, properties, associations?: [{type, id, primary?}]}
 *                                                  (an unlabeled association; `primary: true` between a contact and a
 *                                                  company also adds the Primary one, as HubSpot's UI does)
 *   GET  /associations                             every directed association edge
 *   GET  /owners                                   fixture owners
 *   POST /settings                                 {searchLagMs}: new objects stay out of search results this long
 *                                                  (HubSpot's search index lags writes by seconds)
 */

type ObjectType = 'contacts' | 'companies' | 'tasks' | 'notes';
type PropertyKind = 'string' | 'number' | 'datetime' | 'enumeration' | 'bool';
type Properties = Record<string, string>;

interface CrmObject {
  id: string;
  properties: Properties;
  createdAt: string;
  updatedAt: string;
  archived: boolean;
  archivedAt?: string;
}

interface AssociationEdge {
  fromType: ObjectType;
  fromId: string;
  toType: ObjectType;
  toId: string;
  typeId: number;
}

interface Owner {
  id: string;
  email: string;
  firstName: string;
  lastName: string;
  userId: number;
  teams: { id: string; name: string; primary: boolean }[];
  createdAt: string;
  updatedAt: string;
  archived: boolean;
}

interface PropertyDef {
  name: string;
  label: string;
  type: PropertyKind;
  options?: string[];
  readOnly?: boolean;
  custom?: boolean;
}

export interface HubspotState {
  portalId: number;
  objects: Record<ObjectType, Record<string, CrmObject>>;
  associations: AssociationEdge[];
  owners: Owner[];
  customProperties: Record<ObjectType, PropertyDef[]>;
  settings: { searchLagMs: number };
}

type Ctx = ProviderContext<HubspotState>;

// ---- object types and properties -------------------------------------------

const OBJECT_TYPES: Record<ObjectType, { singular: string; typeId: string; defaults: string[]; text: string[] }> = {
  contacts: { singular: 'contact', typeId: '0-1', defaults: ['email', 'firstname', 'lastname'], text: ['email', 'firstname', 'lastname', 'phone', 'company'] },
  companies: { singular: 'company', typeId: '0-2', defaults: ['name', 'domain', 'hs_lastmodifieddate'], text: ['name', 'domain', 'website', 'phone'] },
  tasks: { singular: 'task', typeId: '0-27', defaults: ['hs_createdate', 'hs_lastmodifieddate'], text: ['hs_task_subject', 'hs_task_body'] },
  notes: { singular: 'note', typeId: '0-46', defaults: ['hs_createdate', 'hs_lastmodifieddate'], text: ['hs_note_body'] },
};

/** Always part of a read, whatever was asked for. */
const BASE_PROPERTIES = ['hs_object_id', 'createdate', 'lastmodifieddate'];

const def = (name: string, type: PropertyKind = 'string', extra: Partial<PropertyDef> = {}): PropertyDef => ({ name, label: name, type, ...extra });
const LIFECYCLE = ['subscriber', 'lead', 'marketingqualifiedlead', 'salesqualifiedlead', 'opportunity', 'customer', 'evangelist', 'other'];
const SYSTEM: PropertyDef[] = [
  def('hs_object_id', 'number', { readOnly: true }),
  def('createdate', 'datetime', { readOnly: true }),
  def('lastmodifieddate', 'datetime', { readOnly: true }),
  def('hs_createdate', 'datetime', { readOnly: true }),
  def('hs_lastmodifieddate', 'datetime', { readOnly: true }),
  def('hubspot_owner_id'),
];
const STANDARD: Record<ObjectType, PropertyDef[]> = {
  contacts: [
    def('email'), def('firstname'), def('lastname'), def('phone'), def('company'), def('jobtitle'), def('website'),
    def('city'), def('country'), def('hs_timezone'), def('lifecyclestage', 'enumeration', { options: LIFECYCLE }),
    def('hs_lead_status', 'enumeration', { options: ['NEW', 'OPEN', 'IN_PROGRESS', 'OPEN_DEAL', 'UNQUALIFIED', 'ATTEMPTED_TO_CONTACT', 'CONNECTED', 'BAD_TIMING'] }),
    def('hs_email_domain', 'string', { readOnly: true }),
  ],
  companies: [
    def('name'), def('domain'), def('website'), def('industry'), def('numberofemployees', 'number'), def('city'), def('country'),
    def('phone'), def('description'), def('lifecyclestage', 'enumeration', { options: LIFECYCLE }),
  ],
  tasks: [
    def('hs_task_subject'), def('hs_task_body'), def('hs_timestamp', 'datetime'),
    def('hs_task_status', 'enumeration', { options: ['NOT_STARTED', 'IN_PROGRESS', 'WAITING', 'COMPLETED', 'DEFERRED'] }),
    def('hs_task_priority', 'enumeration', { options: ['NONE', 'LOW', 'MEDIUM', 'HIGH'] }),
    def('hs_task_type', 'enumeration', { options: ['TODO', 'EMAIL', 'CALL', 'LINKED_IN', 'LINKED_IN_CONNECT', 'LINKED_IN_MESSAGE'] }),
    def('hs_task_completion_date', 'datetime', { readOnly: true }),
  ],
  notes: [def('hs_note_body'), def('hs_timestamp', 'datetime'), def('hs_attachment_ids')],
};
const REQUIRED_ON_CREATE: Partial<Record<ObjectType, string[]>> = { tasks: ['hs_timestamp'], notes: ['hs_timestamp'] };

function parseObjectType(segment: string): ObjectType | undefined {
  const s = segment.toLowerCase();
  for (const [type, meta] of Object.entries(OBJECT_TYPES) as [ObjectType, (typeof OBJECT_TYPES)[ObjectType]][]) {
    if (s === type || s === meta.singular || s === meta.typeId) return type;
  }
  return undefined;
}

function propertyDefs(state: HubspotState, type: ObjectType): Map<string, PropertyDef> {
  return new Map([...SYSTEM, ...STANDARD[type], ...(state.customProperties[type] ?? [])].map((d) => [d.name, d]));
}

// ---- associations -----------------------------------------------------------

interface AssociationType {
  typeId: number;
  from: ObjectType;
  to: ObjectType;
  inverse: number;
  label: string | null;
  /** The `type` string v3 reads show, e.g. contact_to_company. */
  name: string;
}
const pair = (a: number, from: ObjectType, b: number, to: ObjectType, label: string | null = null, suffix = ''): AssociationType[] => [
  { typeId: a, from, to, inverse: b, label, name: `${OBJECT_TYPES[from].singular}_to_${OBJECT_TYPES[to].singular}${suffix}` },
  { typeId: b, from: to, to: from, inverse: a, label, name: `${OBJECT_TYPES[to].singular}_to_${OBJECT_TYPES[from].singular}${suffix}` },
];
/** HubSpot-defined association type ids (contact↔company has a Primary label and an unlabeled default). */
const ASSOCIATION_TYPES: AssociationType[] = [
  ...pair(1, 'contacts', 2, 'companies', 'Primary'),
  ...pair(279, 'contacts', 280, 'companies', null, '_unlabeled'),
  ...pair(204, 'tasks', 203, 'contacts'),
  ...pair(192, 'tasks', 191, 'companies'),
  ...pair(202, 'notes', 201, 'contacts'),
  ...pair(190, 'notes', 189, 'companies'),
];
const PRIMARY_TYPE_IDS = new Set([1, 2]);

function associationType(typeId: number): AssociationType | undefined {
  return ASSOCIATION_TYPES.find((t) => t.typeId === typeId);
}

/** The unlabeled type HubSpot uses for `associations/default`. */
function defaultAssociationType(from: ObjectType, to: ObjectType): AssociationType | undefined {
  return ASSOCIATION_TYPES.find((t) => t.from === from && t.to === to && !PRIMARY_TYPE_IDS.has(t.typeId));
}

function addAssociation(state: HubspotState, fromType: ObjectType, fromId: string, toId: string, type: AssociationType) {
  const add = (edge: AssociationEdge) => {
    const exists = state.associations.some(
      (e) => e.fromType === edge.fromType && e.fromId === edge.fromId && e.toType === edge.toType && e.toId === edge.toId && e.typeId === edge.typeId,
    );
    if (!exists) state.associations.push(edge);
  };
  add({ fromType, fromId, toType: type.to, toId, typeId: type.typeId });
  add({ fromType: type.to, fromId: toId, toType: fromType, toId: fromId, typeId: type.inverse });
}

function edgesFrom(state: HubspotState, type: ObjectType, id: string, toType?: ObjectType): AssociationEdge[] {
  return state.associations.filter((e) => e.fromType === type && e.fromId === id && (!toType || e.toType === toType));
}

// ---- errors -----------------------------------------------------------------

const AUTH_MESSAGE =
  'Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview';
const RATE_LIMIT = { max: 190, intervalMs: 10_000, daily: 625_000 };

interface ValidationIssue {
  isValid: false;
  message: string;
  error: string;
  name: string;
  localizedErrorMessage: string;
}
const issue = (name: string, error: string, message: string): ValidationIssue => ({ isValid: false, message, error, name, localizedErrorMessage: message });

function rateLimitHeaders(remaining: number, dailyRemaining: number): Record<string, string> {
  return {
    'X-HubSpot-RateLimit-Max': String(RATE_LIMIT.max),
    'X-HubSpot-RateLimit-Remaining': String(Math.max(0, remaining)),
    'X-HubSpot-RateLimit-Interval-Milliseconds': String(RATE_LIMIT.intervalMs),
    'X-HubSpot-RateLimit-Daily': String(RATE_LIMIT.daily),
    'X-HubSpot-RateLimit-Daily-Remaining': String(Math.max(0, dailyRemaining)),
  };
}

function errorFor(kind: ErrorKind, status: number, message: string, extra: Record<string, unknown> = {}): WireError {
  const correlationId = randomUUID();
  if (kind === 'rate_limit') {
    const policyName = String(extra.policyName ?? 'TEN_SECONDLY_ROLLING');
    const daily = policyName === 'DAILY';
    return {
      status,
      headers: { ...rateLimitHeaders(0, daily ? 0 : RATE_LIMIT.daily - 1), 'Retry-After': String(extra.retryAfterSeconds ?? 1) },
      body: {
        status: 'error',
        message: daily ? 'You have reached your daily limit.' : 'You have reached your ten_secondly_rolling limit.',
        errorType: 'RATE_LIMIT',
        correlationId,
        policyName,
        groupName: String(extra.groupName ?? 'publicapi:private-app:sandbox'),
      },
    };
  }
  const categories: Record<Exclude<ErrorKind, 'rate_limit'>, string> = {
    error: 'INTERNAL_ERROR',
    unauthorized: 'INVALID_AUTHENTICATION',
    not_found: 'OBJECT_NOT_FOUND',
    bad_request: 'VALIDATION_ERROR',
  };
  const body: Record<string, unknown> = { status: 'error', message, correlationId, category: extra.category ?? categories[kind] };
  for (const key of ['subCategory', 'context', 'errors'] as const) if (extra[key] !== undefined) body[key] = extra[key];
  return { status, body };
}

function failValidation(ctx: Ctx, res: Response, issues: ValidationIssue[]) {
  ctx.fail(res, 'bad_request', 400, `Property values were not valid: ${JSON.stringify(issues)}`, { category: 'VALIDATION_ERROR' });
}

function failNotFound(ctx: Ctx, res: Response, id: string) {
  ctx.fail(res, 'not_found', 404, 'Object not found.  objectId are usually numeric.', { context: { id: [id] } });
}

function failBadType(ctx: Ctx, res: Response, segment: string) {
  ctx.fail(res, 'bad_request', 400, `Unable to infer object type from: ${segment}`);
}

// ---- values -----------------------------------------------------------------

const iso = (ms: number) => new Date(ms).toISOString();
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** Epoch millis or an ISO date/time; undefined when neither. */
function parseTime(value: string): number | undefined {
  const ms = /^-?\d+$/.test(value) ? Number(value) : Date.parse(value);
  return Number.isFinite(ms) ? ms : undefined;
}

/** One written value, checked and normalised the way HubSpot stores it ('' clears the property). */
function normaliseValue(state: HubspotState, type: ObjectType, d: PropertyDef, raw: unknown): { value: string } | { issue: ValidationIssue } {
  if (raw === null || raw === undefined || raw === '') return { value: '' };
  if (typeof raw === 'object') return { issue: issue(d.name, 'INVALID_PROPERTY_VALUE', `${JSON.stringify(raw)} is not a valid value for ${d.name}`) };
  const text = String(raw);
  if (d.name === 'email' && type === 'contacts') {
    return EMAIL.test(text.trim()) ? { value: text.trim().toLowerCase() } : { issue: issue(d.name, 'INVALID_EMAIL', `Email address ${text} is invalid`) };
  }
  if (d.name === 'hubspot_owner_id' && !state.owners.some((o) => o.id === text && !o.archived)) {
    return { issue: issue(d.name, 'INVALID_OWNER_ID', `${text} is not a valid owner id`) };
  }
  switch (d.type) {
    case 'number':
      return Number.isFinite(Number(text)) ? { value: text } : { issue: issue(d.name, 'INVALID_INTEGER', `${text} was not a valid number.`) };
    case 'datetime': {
      const ms = parseTime(text);
      return ms === undefined ? { issue: issue(d.name, 'INVALID_DATE', `${text} was not a valid long or ISO 8601 date.`) } : { value: iso(ms) };
    }
    case 'bool':
      return text === 'true' || text === 'false' ? { value: text } : { issue: issue(d.name, 'INVALID_BOOLEAN', `${text} was not a valid boolean.`) };
    case 'enumeration':
      return d.options?.includes(text)
        ? { value: text }
        : { issue: issue(d.name, 'INVALID_OPTION', `${text} was not one of the allowed options: [${(d.options ?? []).join(', ')}]`) };
    default:
      return { value: text };
  }
}

function validateWrite(state: HubspotState, type: ObjectType, input: Record<string, unknown>, creating: boolean): { values: Properties } | { issues: ValidationIssue[] } {
  const defs = propertyDefs(state, type);
  const values: Properties = {};
  const issues: ValidationIssue[] = [];
  for (const [name, raw] of Object.entries(input)) {
    const d = defs.get(name);
    if (!d) {
      issues.push(issue(name, 'PROPERTY_DOESNT_EXIST', `Property "${name}" does not exist`));
      continue;
    }
    if (d.readOnly) {
      issues.push(issue(name, 'READ_ONLY_VALUE', `${name} is a read only property; its value cannot be set.`));
      continue;
    }
    const result = normaliseValue(state, type, d, raw);
    if ('issue' in result) issues.push(result.issue);
    else values[name] = result.value;
  }
  if (creating) {
    for (const name of REQUIRED_ON_CREATE[type] ?? []) {
      if (!values[name]) issues.push(issue(name, 'REQUIRED_PROPERTY', `${name} is required`));
    }
  }
  return issues.length ? { issues } : { values };
}

/** Values HubSpot derives itself. */
function deriveProperties(type: ObjectType, props: Properties, now: string) {
  if (type === 'contacts') {
    const domain = props.email?.split('@')[1];
    if (domain) props.hs_email_domain = domain;
    else delete props.hs_email_domain;
  }
  if (type === 'tasks') {
    if (props.hs_task_status === 'COMPLETED') props.hs_task_completion_date ??= now;
    else delete props.hs_task_completion_date;
  }
}

function applyValues(props: Properties, values: Properties) {
  for (const [name, value] of Object.entries(values)) {
    if (value === '') delete props[name];
    else props[name] = value;
  }
}

// ---- reads ------------------------------------------------------------------

type Selection = string[] | 'all';

function selectProperties(type: ObjectType, obj: CrmObject, selection: Selection, defs: Map<string, PropertyDef>): Record<string, string | null> {
  if (selection === 'all') return { ...obj.properties };
  const names = new Set([...BASE_PROPERTIES, ...(selection.length ? selection.filter((n) => defs.has(n)) : OBJECT_TYPES[type].defaults)]);
  const out: Record<string, string | null> = {};
  for (const name of names) out[name] = obj.properties[name] ?? null;
  return out;
}

function wireObject(state: HubspotState, type: ObjectType, obj: CrmObject, selection: Selection, associationTypes: ObjectType[] = []) {
  const wire: Record<string, unknown> = {
    id: obj.id,
    properties: selectProperties(type, obj, selection, propertyDefs(state, type)),
    createdAt: obj.createdAt,
    updatedAt: obj.updatedAt,
    archived: obj.archived,
  };
  if (obj.archivedAt) wire.archivedAt = obj.archivedAt;
  const associations: Record<string, unknown> = {};
  for (const toType of associationTypes) {
    const results = edgesFrom(state, type, obj.id, toType).map((e) => ({ id: e.toId, type: associationType(e.typeId)?.name ?? String(e.typeId) }));
    if (results.length) associations[toType] = { results };
  }
  if (Object.keys(associations).length) wire.associations = associations;
  return wire;
}

/** Query lists arrive repeated (`a=1&a=2`, how the SDK sends them) or comma-separated. */
function queryList(value: unknown): string[] {
  const items = Array.isArray(value) ? value : value === undefined ? [] : [value];
  return items.flatMap((v) => String(v).split(',')).map((s) => s.trim()).filter(Boolean);
}

function associationQuery(value: unknown): ObjectType[] {
  return queryList(value).map(parseObjectType).filter((t): t is ObjectType => t !== undefined);
}

function findObject(state: HubspotState, type: ObjectType, id: string, idProperty?: string, includeArchived = false): CrmObject | undefined {
  const visible = (o: CrmObject | undefined) => (o && (includeArchived || !o.archived) ? o : undefined);
  if (!idProperty || idProperty === 'hs_object_id') return visible(state.objects[type][id]);
  const wanted = id.toLowerCase();
  return Object.values(state.objects[type]).find((o) => visible(o) && o.properties[idProperty]?.toLowerCase() === wanted);
}

function contactWithEmail(state: HubspotState, email: string | undefined, exceptId?: string): CrmObject | undefined {
  if (!email) return undefined;
  return Object.values(state.objects.contacts).find((o) => !o.archived && o.id !== exceptId && o.properties.email === email);
}

function byNumericId(a: { id: string }, b: { id: string }) {
  return Number(a.id) - Number(b.id);
}

// ---- search -----------------------------------------------------------------

interface Filter {
  propertyName?: string;
  operator?: string;
  value?: unknown;
  highValue?: unknown;
  values?: unknown[];
}
const OPERATORS = new Set(['EQ', 'NEQ', 'LT', 'LTE', 'GT', 'GTE', 'BETWEEN', 'IN', 'NOT_IN', 'HAS_PROPERTY', 'NOT_HAS_PROPERTY', 'CONTAINS_TOKEN', 'NOT_CONTAINS_TOKEN']);

function compareValues(d: PropertyDef, stored: string, wanted: string): number {
  if (d.type === 'number') return Number(stored) - Number(wanted);
  if (d.type === 'datetime') return (parseTime(stored) ?? 0) - (parseTime(wanted) ?? 0);
  const a = stored.toLowerCase();
  const b = wanted.toLowerCase();
  return a < b ? -1 : a > b ? 1 : 0;
}

const tokens = (text: string) => text.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean);

/** CONTAINS_TOKEN: a `*` wildcard pattern against the value or a word of it, else a run of whole tokens. */
function containsToken(stored: string, pattern: string): boolean {
  const value = stored.toLowerCase();
  const p = pattern.toLowerCase();
  if (p.includes('*')) {
    const re = new RegExp(`^${p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
    return re.test(value) || value.split(/\s+/).some((w) => re.test(w)) || tokens(value).some((t) => re.test(t));
  }
  const have = tokens(value);
  const want = tokens(p);
  if (!want.length) return false;
  return have.some((_, i) => want.every((t, j) => have[i + j] === t));
}

function matchesFilter(d: PropertyDef, stored: string | undefined, f: Filter): boolean {
  const has = stored !== undefined && stored !== '';
  const value = f.value === undefined || f.value === null ? '' : String(f.value);
  const values = (f.values ?? []).map(String);
  const eq = (v: string) => has && compareValues(d, stored!, v) === 0;
  switch (f.operator) {
    case 'HAS_PROPERTY': return has;
    case 'NOT_HAS_PROPERTY': return !has;
    case 'EQ': return eq(value);
    case 'NEQ': return !eq(value);
    case 'IN': return values.some(eq);
    case 'NOT_IN': return !values.some(eq);
    case 'GT': return has && compareValues(d, stored!, value) > 0;
    case 'GTE': return has && compareValues(d, stored!, value) >= 0;
    case 'LT': return has && compareValues(d, stored!, value) < 0;
    case 'LTE': return has && compareValues(d, stored!, value) <= 0;
    case 'BETWEEN': return has && compareValues(d, stored!, value) >= 0 && compareValues(d, stored!, String(f.highValue ?? '')) <= 0;
    case 'CONTAINS_TOKEN': return has && containsToken(stored!, value);
    case 'NOT_CONTAINS_TOKEN': return !(has && containsToken(stored!, value));
    default: return false;
  }
}

/** Checks a search request against HubSpot's limits; returns a message naming the problem. */
function searchProblem(defs: Map<string, PropertyDef>, body: Record<string, unknown>): string | undefined {
  const groups = body.filterGroups ?? [];
  if (!Array.isArray(groups)) return 'filterGroups must be an array';
  if (groups.length > 5) return `Too many filter groups: ${groups.length}, the maximum is 5`;
  let total = 0;
  for (const group of groups as { filters?: Filter[] }[]) {
    const filters = group?.filters ?? [];
    if (!Array.isArray(filters)) return 'filters must be an array';
    if (filters.length > 6) return `Too many filters in a group: ${filters.length}, the maximum is 6`;
    total += filters.length;
    for (const f of filters) {
      if (!f?.propertyName || !defs.has(f.propertyName)) return `Unable to find property: ${f?.propertyName ?? '(none)'}`;
      if (!OPERATORS.has(String(f.operator))) return `Invalid operator ${f.operator} for property ${f.propertyName}`;
      if ((f.operator === 'IN' || f.operator === 'NOT_IN') && !Array.isArray(f.values)) return `Operator ${f.operator} on ${f.propertyName} needs values[]`;
    }
  }
  if (total > 18) return `Too many filters: ${total}, the maximum is 18`;
  const limit = body.limit ?? 10;
  if (!Number.isInteger(limit) || (limit as number) < 0 || (limit as number) > 200) return `limit must be between 0 and 200, got ${String(limit)}`;
  const after = Number(body.after ?? 0);
  if (!Number.isInteger(after) || after < 0) return `after must be a non-negative integer, got ${String(body.after)}`;
  if (after + (limit as number) > 10_000) return 'Search results are limited to 10,000 objects per query';
  return undefined;
}

interface Sort {
  propertyName: string;
  direction: 'ASCENDING' | 'DESCENDING';
}
function parseSort(raw: unknown): Sort | undefined {
  if (typeof raw === 'string') return { propertyName: raw.replace(/^-/, ''), direction: raw.startsWith('-') ? 'DESCENDING' : 'ASCENDING' };
  if (raw && typeof raw === 'object' && 'propertyName' in raw) {
    const r = raw as { propertyName: string; direction?: string };
    return { propertyName: r.propertyName, direction: r.direction === 'DESCENDING' ? 'DESCENDING' : 'ASCENDING' };
  }
  return undefined;
}

function sortObjects(objects: CrmObject[], sort: Sort | undefined, defs: Map<string, PropertyDef>): CrmObject[] {
  const d = sort && defs.get(sort.propertyName);
  if (!sort || !d) return objects.sort(byNumericId);
  const sign = sort.direction === 'DESCENDING' ? -1 : 1;
  return objects.sort((a, b) => {
    const va = a.properties[sort.propertyName];
    const vb = b.properties[sort.propertyName];
    if (!va || !vb) return va ? -1 : vb ? 1 : byNumericId(a, b);
    return sign * compareValues(d, va, vb) || byNumericId(a, b);
  });
}

function search(ctx: Ctx, type: ObjectType, body: Record<string, unknown>) {
  const state = ctx.state;
  const defs = propertyDefs(state, type);
  const groups = ((body.filterGroups as { filters?: Filter[] }[] | undefined) ?? []).map((g) => g?.filters ?? []);
  const indexedBefore = ctx.now() - (state.settings.searchLagMs ?? 0);
  const query = typeof body.query === 'string' ? body.query.trim() : '';
  const matched = Object.values(state.objects[type]).filter((o) => {
    if (o.archived || Date.parse(o.createdAt) > indexedBefore) return false;
    if (query && !OBJECT_TYPES[type].text.some((n) => o.properties[n] && containsToken(o.properties[n]!, `*${query}*`))) return false;
    if (!groups.length) return true;
    return groups.some((filters) => filters.every((f) => matchesFilter(defs.get(f.propertyName!)!, o.properties[f.propertyName!], f)));
  });
  const sorts = Array.isArray(body.sorts) ? body.sorts : [];
  sortObjects(matched, parseSort(sorts[0]), defs);
  const limit = (body.limit as number | undefined) ?? 10;
  const after = Number(body.after ?? 0);
  const selection = queryList(body.properties);
  const page = matched.slice(after, after + limit);
  const result: Record<string, unknown> = { total: matched.length, results: page.map((o) => wireObject(state, type, o, selection)) };
  if (after + limit < matched.length) result.paging = { next: { after: String(after + limit) } };
  return result;
}

// ---- writes -----------------------------------------------------------------

interface AssociationInput {
  to?: { id?: unknown };
  types?: { associationCategory?: string; associationTypeId?: unknown }[];
}

/** Resolves `associations[]` of a create body, all or nothing. */
function createAssociations(state: HubspotState, type: ObjectType, raw: unknown): { links: { toId: string; type: AssociationType }[] } | { problem: string } {
  if (raw === undefined) return { links: [] };
  if (!Array.isArray(raw)) return { problem: 'associations must be an array' };
  const links: { toId: string; type: AssociationType }[] = [];
  for (const item of raw as AssociationInput[]) {
    const toId = String(item?.to?.id ?? '');
    for (const spec of item?.types ?? []) {
      const t = associationType(Number(spec?.associationTypeId));
      if (!t || spec.associationCategory !== 'HUBSPOT_DEFINED' || t.from !== type) {
        return { problem: `Invalid association type ${String(spec?.associationTypeId)} (${String(spec?.associationCategory)}) from ${OBJECT_TYPES[type].singular}` };
      }
      if (!findObject(state, t.to, toId)) return { problem: `One or more associations are invalid: no ${OBJECT_TYPES[t.to].singular} with ID ${toId}` };
      links.push({ toId, type: t });
    }
  }
  return { links };
}

function newObject(ctx: Ctx, type: ObjectType, values: Properties, id?: string): CrmObject {
  const objectId = id ?? String(10_000 + ctx.nextId('object'));
  const now = iso(ctx.now());
  const properties: Properties = {};
  if (type === 'tasks') Object.assign(properties, { hs_task_status: 'NOT_STARTED', hs_task_type: 'TODO', hs_task_priority: 'NONE' });
  applyValues(properties, values);
  Object.assign(properties, { hs_object_id: objectId, createdate: now, lastmodifieddate: now, hs_createdate: now, hs_lastmodifieddate: now });
  deriveProperties(type, properties, now);
  const obj: CrmObject = { id: objectId, properties, createdAt: now, updatedAt: now, archived: false };
  ctx.state.objects[type][objectId] = obj;
  return obj;
}

function duplicateContact(ctx: Ctx, res: Response, existing: CrmObject) {
  ctx.fail(res, 'bad_request', 409, `Contact already exists. Existing ID: ${existing.id}`, { category: 'CONFLICT' });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function routeType(ctx: Ctx, req: Request, res: Response, param = 'objectType'): ObjectType | undefined {
  const segment = String(req.params[param]);
  const type = parseObjectType(segment);
  if (!type) failBadType(ctx, res, segment);
  return type;
}

// ---- wire routes --------------------------------------------------------------

function objectRoutes(router: Router, ctx: Ctx) {
  const base = '/hubspot/crm/v3/objects/:objectType';

  router.post(`${base}/search`, (req, res) => {
    const type = routeType(ctx, req, res);
    if (!type) return;
    const body = isRecord(req.body) ? req.body : {};
    const problem = searchProblem(propertyDefs(ctx.state, type), body);
    if (problem) return ctx.fail(res, 'bad_request', 400, problem);
    res.json(search(ctx, type, body));
  });

  router.get(base, (req, res) => {
    const type = routeType(ctx, req, res);
    if (!type) return;
    const limit = Number(req.query.limit ?? 10);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) return ctx.fail(res, 'bad_request', 400, `limit must be between 1 and 100, got ${String(req.query.limit)}`);
    const after = Number(req.query.after ?? 0) || 0;
    const archived = req.query.archived === 'true';
    const all = Object.values(ctx.state.objects[type]).filter((o) => o.archived === archived).sort(byNumericId);
    const selection = queryList(req.query.properties);
    const assoc = associationQuery(req.query.associations);
    const result: Record<string, unknown> = { results: all.slice(after, after + limit).map((o) => wireObject(ctx.state, type, o, selection, assoc)) };
    if (after + limit < all.length) result.paging = { next: { after: String(after + limit), link: `?after=${after + limit}` } };
    res.json(result);
  });

  router.post(base, (req, res) => {
    const type = routeType(ctx, req, res);
    if (!type) return;
    const body = isRecord(req.body) ? req.body : {};
    if (!isRecord(body.properties)) return ctx.fail(res, 'bad_request', 400, 'Invalid input JSON: "properties" is required and must be an object');
    const checked = validateWrite(ctx.state, type, body.properties, true);
    if ('issues' in checked) return failValidation(ctx, res, checked.issues);
    const existing = type === 'contacts' ? contactWithEmail(ctx.state, checked.values.email) : undefined;
    if (existing) return duplicateContact(ctx, res, existing);
    const assoc = createAssociations(ctx.state, type, body.associations);
    if ('problem' in assoc) return ctx.fail(res, 'bad_request', 400, assoc.problem);
    const obj = newObject(ctx, type, checked.values);
    for (const link of assoc.links) addAssociation(ctx.state, type, obj.id, link.toId, link.type);
    ctx.changed();
    res.status(201).json(wireObject(ctx.state, type, obj, 'all'));
  });

  router.get(`${base}/:objectId`, (req, res) => {
    const type = routeType(ctx, req, res);
    if (!type) return;
    const id = String(req.params.objectId);
    const obj = findObject(ctx.state, type, id, req.query.idProperty as string | undefined, req.query.archived === 'true');
    if (!obj) return failNotFound(ctx, res, id);
    res.json(wireObject(ctx.state, type, obj, queryList(req.query.properties), associationQuery(req.query.associations)));
  });

  router.patch(`${base}/:objectId`, (req, res) => {
    const type = routeType(ctx, req, res);
    if (!type) return;
    const id = String(req.params.objectId);
    const obj = findObject(ctx.state, type, id, req.query.idProperty as string | undefined);
    if (!obj) return failNotFound(ctx, res, id);
    const body = isRecord(req.body) ? req.body : {};
    if (!isRecord(body.properties)) return ctx.fail(res, 'bad_request', 400, 'Invalid input JSON: "properties" is required and must be an object');
    const checked = validateWrite(ctx.state, type, body.properties, false);
    if ('issues' in checked) return failValidation(ctx, res, checked.issues);
    const existing = type === 'contacts' ? contactWithEmail(ctx.state, checked.values.email, obj.id) : undefined;
    if (existing) return duplicateContact(ctx, res, existing);
    const now = iso(ctx.now());
    applyValues(obj.properties, checked.values);
    Object.assign(obj.properties, { lastmodifieddate: now, hs_lastmodifieddate: now });
    deriveProperties(type, obj.properties, now);
    obj.updatedAt = now;
    ctx.changed();
    res.json(wireObject(ctx.state, type, obj, 'all'));
  });

  router.delete(`${base}/:objectId`, (req, res) => {
    const type = routeType(ctx, req, res);
    if (!type) return;
    const obj = findObject(ctx.state, type, String(req.params.objectId));
    // HubSpot answers 204 for an unknown or already archived id too.
    if (obj) {
      obj.archived = true;
      obj.archivedAt = iso(ctx.now());
      ctx.changed();
    }
    res.status(204).end();
  });
}

function associationRoutes(router: Router, ctx: Ctx) {
  const base = '/hubspot/crm/v4/objects/:fromType/:fromId/associations';

  /** Both ends of a v4 association path, or an error already sent. */
  const ends = (req: Request, res: Response) => {
    const fromType = routeType(ctx, req, res, 'fromType');
    const toType = fromType && routeType(ctx, req, res, 'toType');
    if (!fromType || !toType) return undefined;
    const fromId = String(req.params.fromId);
    const toId = String(req.params.toId);
    for (const [t, id] of [[fromType, fromId], [toType, toId]] as const) {
      if (!findObject(ctx.state, t, id)) {
        ctx.fail(res, 'not_found', 404, `No ${OBJECT_TYPES[t].singular} with ID ${id} exists`, { context: { id: [id] } });
        return undefined;
      }
    }
    return { fromType, fromId, toType, toId };
  };

  router.put(`${base}/default/:toType/:toId`, (req, res) => {
    const e = ends(req, res);
    if (!e) return;
    const t = defaultAssociationType(e.fromType, e.toType);
    if (!t) return ctx.fail(res, 'bad_request', 400, `No default association type from ${e.fromType} to ${e.toType}`);
    const startedAt = iso(ctx.now());
    addAssociation(ctx.state, e.fromType, e.fromId, e.toId, t);
    ctx.changed();
    const spec = (typeId: number) => ({ associationCategory: 'HUBSPOT_DEFINED', associationTypeId: typeId });
    res.json({
      status: 'COMPLETE',
      results: [
        { from: { id: e.fromId }, to: { id: e.toId }, associationSpec: spec(t.typeId) },
        { from: { id: e.toId }, to: { id: e.fromId }, associationSpec: spec(t.inverse) },
      ],
      startedAt,
      completedAt: iso(ctx.now()),
    });
  });

  router.put(`${base}/:toType/:toId`, (req, res) => {
    const e = ends(req, res);
    if (!e) return;
    const specs = Array.isArray(req.body) ? (req.body as { associationCategory?: string; associationTypeId?: unknown }[]) : [];
    if (!specs.length) return ctx.fail(res, 'bad_request', 400, 'Request body must be a non-empty array of association specs');
    const types: AssociationType[] = [];
    for (const spec of specs) {
      const t = associationType(Number(spec?.associationTypeId));
      if (!t || spec.associationCategory !== 'HUBSPOT_DEFINED' || t.from !== e.fromType || t.to !== e.toType) {
        return ctx.fail(res, 'bad_request', 400, `Invalid association type ${String(spec?.associationTypeId)} (${String(spec?.associationCategory)}) from ${e.fromType} to ${e.toType}`);
      }
      types.push(t);
    }
    for (const t of types) addAssociation(ctx.state, e.fromType, e.fromId, e.toId, t);
    ctx.changed();
    const labels = edgesFrom(ctx.state, e.fromType, e.fromId, e.toType)
      .filter((edge) => edge.toId === e.toId)
      .map((edge) => associationType(edge.typeId)?.label)
      .filter((l): l is string => Boolean(l));
    res.status(201).json({
      fromObjectTypeId: OBJECT_TYPES[e.fromType].typeId,
      fromObjectId: Number(e.fromId),
      toObjectTypeId: OBJECT_TYPES[e.toType].typeId,
      toObjectId: Number(e.toId),
      labels,
    });
  });

  router.delete(`${base}/:toType/:toId`, (req, res) => {
    const fromType = routeType(ctx, req, res, 'fromType');
    const toType = fromType && routeType(ctx, req, res, 'toType');
    if (!fromType || !toType) return;
    const [a, b] = [String(req.params.fromId), String(req.params.toId)];
    ctx.state.associations = ctx.state.associations.filter(
      (e) => !((e.fromType === fromType && e.fromId === a && e.toType === toType && e.toId === b) || (e.fromType === toType && e.fromId === b && e.toType === fromType && e.toId === a)),
    );
    ctx.changed();
    res.status(204).end();
  });

  router.get(`${base}/:toType`, (req, res) => {
    const fromType = routeType(ctx, req, res, 'fromType');
    const toType = fromType && routeType(ctx, req, res, 'toType');
    if (!fromType || !toType) return;
    const limit = Number(req.query.limit ?? 500);
    if (!Number.isInteger(limit) || limit < 1 || limit > 500) return ctx.fail(res, 'bad_request', 400, `limit must be between 1 and 500, got ${String(req.query.limit)}`);
    const after = Number(req.query.after ?? 0) || 0;
    const grouped = new Map<string, { category: string; typeId: number; label: string | null }[]>();
    for (const edge of edgesFrom(ctx.state, fromType, String(req.params.fromId), toType)) {
      const list = grouped.get(edge.toId) ?? [];
      list.push({ category: 'HUBSPOT_DEFINED', typeId: edge.typeId, label: associationType(edge.typeId)?.label ?? null });
      grouped.set(edge.toId, list);
    }
    const all = [...grouped].sort(([a], [b]) => Number(a) - Number(b)).map(([toId, associationTypes]) => ({ toObjectId: Number(toId), associationTypes }));
    const result: Record<string, unknown> = { results: all.slice(after, after + limit) };
    if (after + limit < all.length) result.paging = { next: { after: String(after + limit), link: `?after=${after + limit}` } };
    res.json(result);
  });
}

function wireOwner(o: Owner) {
  return { id: o.id, email: o.email, type: 'PERSON', firstName: o.firstName, lastName: o.lastName, userId: o.userId, userIdIncludingInactive: o.userId, createdAt: o.createdAt, updatedAt: o.updatedAt, archived: o.archived, teams: o.teams };
}

function ownerRoutes(router: Router, ctx: Ctx) {
  router.get('/hubspot/crm/v3/owners', (req, res) => {
    const limit = Number(req.query.limit ?? 100);
    if (!Number.isInteger(limit) || limit < 1 || limit > 500) return ctx.fail(res, 'bad_request', 400, `limit must be between 1 and 500, got ${String(req.query.limit)}`);
    const after = Number(req.query.after ?? 0) || 0;
    const email = typeof req.query.email === 'string' ? req.query.email.toLowerCase() : undefined;
    const archived = req.query.archived === 'true';
    const owners = ctx.state.owners.filter((o) => o.archived === archived && (!email || o.email.toLowerCase() === email));
    const result: Record<string, unknown> = { results: owners.slice(after, after + limit).map(wireOwner) };
    if (after + limit < owners.length) result.paging = { next: { after: String(after + limit), link: `?after=${after + limit}` } };
    res.json(result);
  });

  router.get('/hubspot/crm/v3/owners/:ownerId', (req, res) => {
    const id = String(req.params.ownerId);
    const byUser = req.query.idProperty === 'userId';
    const owner = ctx.state.owners.find((o) => (byUser ? String(o.userId) === id : o.id === id) && o.archived === (req.query.archived === 'true'));
    if (!owner) return ctx.fail(res, 'not_found', 404, `No owner with ${byUser ? 'userId' : 'id'} ${id}`);
    res.json(wireOwner(owner));
  });
}

const FIELD_TYPES: Record<PropertyKind, string> = { string: 'text', number: 'number', datetime: 'date', enumeration: 'select', bool: 'booleancheckbox' };

function wireProperty(type: ObjectType, d: PropertyDef) {
  return {
    name: d.name,
    label: d.label,
    type: d.type,
    fieldType: FIELD_TYPES[d.type],
    groupName: d.custom ? 'prospector' : `${OBJECT_TYPES[type].singular}information`,
    description: '',
    options: (d.options ?? []).map((value, i) => ({ label: value, value, displayOrder: i, hidden: false })),
    displayOrder: -1,
    calculated: false,
    externalOptions: false,
    hasUniqueValue: d.name === 'email' && type === 'contacts',
    hidden: false,
    hubspotDefined: !d.custom,
    formField: !d.readOnly,
    modificationMetadata: { archivable: Boolean(d.custom), readOnlyDefinition: !d.custom, readOnlyValue: Boolean(d.readOnly) },
    archived: false,
  };
}

function propertyRoutes(router: Router, ctx: Ctx) {
  const base = '/hubspot/crm/v3/properties/:objectType';
  router.get(base, (req, res) => {
    const type = routeType(ctx, req, res);
    if (!type) return;
    res.json({ results: [...propertyDefs(ctx.state, type).values()].map((d) => wireProperty(type, d)) });
  });
  router.get(`${base}/:propertyName`, (req, res) => {
    const type = routeType(ctx, req, res);
    if (!type) return;
    const d = propertyDefs(ctx.state, type).get(String(req.params.propertyName));
    if (!d) return ctx.fail(res, 'not_found', 404, `Unable to find property ${String(req.params.propertyName)} for object type ${OBJECT_TYPES[type].typeId}`);
    res.json(wireProperty(type, d));
  });
  router.post(base, (req, res) => {
    const type = routeType(ctx, req, res);
    if (!type) return;
    const body = isRecord(req.body) ? req.body : {};
    const name = String(body.name ?? '');
    const kind = body.type === 'date' ? 'datetime' : (body.type as PropertyKind);
    if (!/^[a-z][a-z0-9_]*$/.test(name)) return ctx.fail(res, 'bad_request', 400, `Invalid property name: ${name || '(missing)'}`);
    if (!(kind in FIELD_TYPES)) return ctx.fail(res, 'bad_request', 400, `Invalid property type: ${String(body.type)}`);
    if (propertyDefs(ctx.state, type).has(name)) return ctx.fail(res, 'bad_request', 409, `Property named '${name}' already exists.`, { category: 'OBJECT_ALREADY_EXISTS' });
    const options = Array.isArray(body.options) ? (body.options as { value?: unknown }[]).map((o) => String(o?.value ?? '')) : undefined;
    const d: PropertyDef = { name, label: String(body.label ?? name), type: kind, custom: true, ...(kind === 'enumeration' ? { options } : {}) };
    (ctx.state.customProperties[type] ??= []).push(d);
    ctx.changed();
    res.status(201).json(wireProperty(type, d));
  });
}

/** Bearer check plus HubSpot's rate-limit headers on every answer. */
function gate(ctx: Ctx) {
  let windowStart = 0;
  let inWindow = 0;
  let today = 0;
  return (req: Request, res: Response, next: () => void) => {
    const now = ctx.now();
    if (now - windowStart >= RATE_LIMIT.intervalMs) [windowStart, inWindow] = [now, 0];
    inWindow++;
    today++;
    res.set(rateLimitHeaders(RATE_LIMIT.max - inWindow, RATE_LIMIT.daily - today));
    const token = /^Bearer\s+(\S+)\s*$/i.exec(req.get('authorization') ?? '');
    if (!token) return ctx.fail(res, 'unauthorized', 401, AUTH_MESSAGE);
    next();
  };
}

// ---- control plane ------------------------------------------------------------

function controlObject(state: HubspotState, type: ObjectType, o: CrmObject) {
  const associations: Record<string, string[]> = {};
  for (const e of edgesFrom(state, type, o.id)) {
    const ids = (associations[e.toType] ??= []);
    if (!ids.includes(e.toId)) ids.push(e.toId);
  }
  return { ...o, associations };
}

function control(router: Router, ctx: Ctx) {
  router.get('/associations', (_req, res) => {
    res.json(ctx.state.associations);
  });
  router.get('/owners', (_req, res) => {
    res.json(ctx.state.owners);
  });
  router.post('/settings', (req, res) => {
    const lag = Number(req.body?.searchLagMs ?? 0);
    if (!Number.isInteger(lag) || lag < 0) return void res.status(400).json({ error: 'searchLagMs must be a non-negative integer' });
    ctx.state.settings.searchLagMs = lag;
    ctx.changed();
    res.json(ctx.state.settings);
  });
  for (const type of Object.keys(OBJECT_TYPES) as ObjectType[]) {
    router.get(`/${type}`, (req, res) => {
      const includeArchived = req.query.archived === 'true';
      const filters = Object.entries(req.query).filter(([k]) => k !== 'archived');
      const objects = Object.values(ctx.state.objects[type])
        .filter((o) => (includeArchived || !o.archived) && filters.every(([k, v]) => o.properties[k] === String(v)))
        .sort(byNumericId);
      res.json(objects.map((o) => controlObject(ctx.state, type, o)));
    });
    router.post(`/${type}`, (req, res) => {
      const body = isRecord(req.body) ? req.body : {};
      const values = Object.fromEntries(Object.entries(isRecord(body.properties) ? body.properties : {}).map(([k, v]) => [k, String(v)]));
      const obj = newObject(ctx, type, values, body.id === undefined ? undefined : String(body.id));
      for (const link of (Array.isArray(body.associations) ? body.associations : []) as { type?: string; id?: unknown; primary?: unknown }[]) {
        const toType = parseObjectType(String(link?.type)) ?? type;
        const t = defaultAssociationType(type, toType);
        if (t) addAssociation(ctx.state, type, obj.id, String(link.id), t);
        const primary = link.primary === true ? ASSOCIATION_TYPES.find((p) => p.from === type && p.to === toType && PRIMARY_TYPE_IDS.has(p.typeId)) : undefined;
        if (primary) addAssociation(ctx.state, type, obj.id, String(link.id), primary);
      }
      ctx.changed();
      res.status(201).json(controlObject(ctx.state, type, obj));
    });
  }
}

// ---- fixtures -----------------------------------------------------------------

interface FixtureObject {
  id: string;
  createdAt: string;
  companyId?: string;
  properties: Record<string, string>;
}

function seedObject(type: ObjectType, f: FixtureObject): CrmObject {
  const properties: Properties = { ...f.properties, hs_object_id: f.id, createdate: f.createdAt, lastmodifieddate: f.createdAt, hs_createdate: f.createdAt, hs_lastmodifieddate: f.createdAt };
  deriveProperties(type, properties, f.createdAt);
  return { id: f.id, properties, createdAt: f.createdAt, updatedAt: f.createdAt, archived: false };
}

function initialState(): HubspotState {
  const seed = structuredClone(fixture);
  const state: HubspotState = {
    portalId: seed.portalId,
    objects: { contacts: {}, companies: {}, tasks: {}, notes: {} },
    associations: [],
    owners: seed.owners.map((o) => ({ ...o, createdAt: '2024-01-02T09:00:00.000Z', updatedAt: '2024-01-02T09:00:00.000Z', archived: false })),
    customProperties: { contacts: [], companies: [], tasks: [], notes: [] },
    settings: { searchLagMs: 0 },
  };
  for (const [type, defs] of Object.entries(seed.customProperties) as [ObjectType, { name: string; label: string; type: string }[]][]) {
    state.customProperties[type] = defs.map((d) => ({ name: d.name, label: d.label, type: d.type as PropertyKind, custom: true }));
  }
  for (const c of seed.companies as FixtureObject[]) state.objects.companies[c.id] = seedObject('companies', c);
  for (const c of seed.contacts as FixtureObject[]) {
    state.objects.contacts[c.id] = seedObject('contacts', c);
    if (!c.companyId) continue;
    // Contacts made in HubSpot's UI carry both the Primary and the unlabeled company association.
    addAssociation(state, 'contacts', c.id, c.companyId, associationType(1)!);
    addAssociation(state, 'contacts', c.id, c.companyId, associationType(279)!);
  }
  return state;
}

export const hubspot: ProviderModule<HubspotState> = {
  name: 'hubspot',
  prefixes: ['/hubspot'],
  initialState,
  errorFor,
  routes(router, ctx) {
    router.use('/hubspot', gate(ctx));
    objectRoutes(router, ctx);
    associationRoutes(router, ctx);
    ownerRoutes(router, ctx);
    propertyRoutes(router, ctx);
  },
  control,
};
