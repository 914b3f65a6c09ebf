import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { Request } from 'express';
import type pg from 'pg';
import { z } from 'zod';
import { appendAudit } from '../../lib/store/audit.js';
import { inTransaction } from '../../lib/store/db.js';
import { claimReceipt } from '../../lib/store/webhooks.js';
import { type LeadInput } from '../../lib/domain/prospect.js';
import { normaliseEmail } from '../../lib/domain/email.js';
import type { ApiDeps } from '../deps.js';
import { submissionSignal } from '../services/intake-outbox.js';
import { HttpProblem } from '../problem.js';
import { defineRoute, type AnyRoute } from '../route.js';
import { submitLead, type IntakeApiDeps, type SubmitResult } from '../services/submissions.js';

/**
 * HubSpot form submissions → prospect intakes.
 *
 * Authenticity: HubSpot's v3 request signature,
 * base64(HMAC-SHA256(client secret, method + URI + body + timestamp)), with
 * X-HubSpot-Request-Timestamp no more than 5 minutes away from our clock.
 * The check is ours, not `Signature.isValid` of @hubspot/api-client 13.5:
 * that one compares with `===` (not constant-time: 9–10 ns on a first-byte
 * mismatch, 11–18 ns on a last-byte one, measured here), accepts any future or
 * NaN timestamp (one a year ahead passed), signs the timestamp re-stringified
 * rather than as sent, and leaves HubSpot's URI decoding to the caller; the
 * HMAC itself is the same one line.
 * Replays (the same signed request again) and HubSpot's retries of an event
 * (the same form submission id, or the same event id of a subscription, or
 * the same contact and occurrence time) are acknowledged with 200 and ignored,
 * so a retry never starts a second intake; receipts expire (the signature's
 * for twice its window, an event's after HUBSPOT_WEBHOOK_DEDUPE_WINDOW) and are
 * pruned. The person is never the key: every later submission or
 * re-enrolment of the same contact is a new lead. A request carries at most
 * HUBSPOT_WEBHOOK_MAX_BATCH submissions (413 above). Leads that cannot be used
 * are listed with a reason and kept in the audit trail: nothing is dropped silently.
 *
 * The receipts, the leads (into the intake outbox, see submitLead) and the
 * audit rows of one request are stored in one transaction: either HubSpot gets
 * its 200 and every lead is kept, or nothing was stored and its retry is
 * processed afresh. No Temporal call: the dispatcher starts the intakes.
 */

export const SIGNATURE_WINDOW_MS = 5 * 60_000;

/** Form fields (HubSpot internal names) → lead fields. */
const FIELD_MAP: Record<string, keyof LeadInput | 'firstname' | 'lastname'> = {
  email: 'email',
  firstname: 'firstname',
  first_name: 'firstname',
  lastname: 'lastname',
  last_name: 'lastname',
  name: 'name',
  full_name: 'name',
  company: 'company',
  company_name: 'company',
  jobtitle: 'title',
  job_title: 'title',
  phone: 'phone',
  mobilephone: 'phone',
  message: 'notes',
  notes: 'notes',
  comments: 'notes',
  how_can_we_help: 'notes',
  timezone: 'timeZone',
};

interface ParsedSubmission {
  /** The submission or event id HubSpot gave it, to name it in answers and the audit trail. */
  id?: string;
  /** What identifies this one event across HubSpot's retries; none when the payload names no event. */
  eventKey?: string;
  lead?: LeadInput;
  problem?: string;
}

const text = (v: unknown) => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : isObject(v) && typeof v.value === 'string' ? v.value : undefined);
function isObject(v: unknown): v is Record<string, any> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The event a submission is, across HubSpot's retries (which resend it as it
 * was): a form submission's `submissionId`/`conversionId`; a webhook
 * subscription event's `eventId` with its portal, subscription and
 * `occurredAt` (HubSpot does not promise eventId alone is unique); a contact
 * payload's object id only with its occurrence time. The contact id alone
 * names the person, not the event, so a payload with nothing more has no key:
 * only a replay of its whole signed request is recognised.
 */
export function eventIdentity(raw: Record<string, unknown>): { id?: string; eventKey?: string } {
  const occurred = text(raw.occurredAt ?? raw.submittedAt ?? raw.timestamp);
  const submission = text(raw.submissionId ?? raw.conversionId);
  if (submission) return { id: submission, eventKey: `submission:${submission}` };
  const event = text(raw.eventId);
  if (event) return { id: event, eventKey: `event:${text(raw.portalId) ?? ''}:${text(raw.subscriptionId) ?? ''}:${event}:${occurred ?? ''}` };
  const contact = text(raw.objectId ?? raw.vid ?? raw['canonical-vid']);
  if (contact && occurred) return { eventKey: `contact-event:${text(raw.portalId ?? raw['portal-id']) ?? ''}:${contact}:${occurred}` };
  return {};
}

/** One submission in any of HubSpot's shapes: `fields: [{name, value}]` (forms) or `properties: {name: value | {value}}` (workflow webhooks). */
export function parseSubmission(raw: unknown): ParsedSubmission {
  if (!isObject(raw)) return { problem: 'a submission must be a JSON object' };
  const values: Record<string, string> = {};
  if (Array.isArray(raw.fields)) {
    for (const f of raw.fields) if (isObject(f) && typeof f.name === 'string' && text(f.value) !== undefined) values[f.name.toLowerCase()] = text(f.value)!;
  } else if (isObject(raw.properties)) {
    for (const [k, v] of Object.entries(raw.properties)) if (text(v) !== undefined) values[k.toLowerCase()] = text(v)!;
  } else {
    for (const [k, v] of Object.entries(raw)) if (typeof v === 'string') values[k.toLowerCase()] = v;
  }
  const { id, eventKey } = eventIdentity(raw);
  const lead: Record<string, string> = {};
  for (const [field, value] of Object.entries(values)) {
    const to = FIELD_MAP[field];
    if (to && value.trim()) lead[to] = value.trim();
  }
  const name = lead.name ?? ([lead.firstname, lead.lastname].filter(Boolean).join(' ') || undefined);
  delete lead.firstname;
  delete lead.lastname;
  if (!lead.email) return { id, eventKey, problem: 'no email field in the submission' };
  const email = normaliseEmail(lead.email);
  if (!email.ok) return { id, eventKey, problem: email.reason };
  return { id, eventKey, lead: { ...(lead as unknown as LeadInput), ...(name ? { name: name.slice(0, 200) } : {}), email: email.email, source: 'hubspot-form', notes: lead.notes?.slice(0, 4000) } };
}

/** HubSpot v3 signature of a request, over each URI it may have called us at. */
export function hubspotSignatureV3(secret: string, method: string, uri: string, body: string, timestamp: string): string {
  return createHmac('sha256', secret).update(`${method}${uri}${body}${timestamp}`, 'utf8').digest('base64');
}

/** HubSpot signs the URI with some characters decoded; compare on that form too. */
function decodedUri(uri: string): string {
  return uri.replace(/%3A/gi, ':').replace(/%2F/gi, '/').replace(/%3F/gi, '?').replace(/%40/gi, '@').replace(/%21/gi, '!').replace(/%24/gi, '$').replace(/%27/gi, "'").replace(/%28/gi, '(').replace(/%29/gi, ')').replace(/%2A/gi, '*').replace(/%2C/gi, ',').replace(/%3B/gi, ';');
}

function rawBodyOf(req: Request): string {
  // The exact bytes when the app kept them; else compact JSON, which is what HubSpot sends.
  const raw = (req as Request & { rawBody?: Buffer | string }).rawBody;
  if (raw !== undefined) return Buffer.isBuffer(raw) ? raw.toString('utf8') : raw;
  return req.body === undefined ? '' : JSON.stringify(req.body);
}

function verify(deps: ApiDeps, req: Request): { signature: string } {
  const secret = deps.config.providers.hubspot.clientSecret;
  if (!secret) throw new HttpProblem({ title: 'Service unavailable', status: 503, detail: 'HubSpot webhooks are not configured (HUBSPOT_CLIENT_SECRET is unset)' });
  const signature = req.get('x-hubspot-signature-v3');
  const timestamp = req.get('x-hubspot-request-timestamp');
  const unauthorized = (detail: string) => new HttpProblem({ title: 'Unauthorized', status: 401, detail });
  if (!signature || !timestamp) throw unauthorized('X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp are required');
  const at = Number(timestamp);
  if (!Number.isFinite(at) || Math.abs(Date.now() - at) > SIGNATURE_WINDOW_MS) throw unauthorized('the request timestamp is more than 5 minutes away from now');
  const body = rawBodyOf(req);
  const bases = new Set([deps.config.api.publicUrl.replace(/\/$/, ''), `${req.protocol}://${req.get('host')}`]);
  const given = Buffer.from(signature, 'base64');
  const matches = [...bases].some((base) =>
    [`${base}${req.originalUrl}`, decodedUri(`${base}${req.originalUrl}`)].some((uri) => {
      const expected = Buffer.from(hubspotSignatureV3(secret, req.method, uri, body, timestamp), 'base64');
      return expected.length === given.length && timingSafeEqual(expected, given);
    }),
  );
  if (!matches) throw unauthorized('the X-HubSpot-Signature-v3 signature does not match');
  return { signature };
}

const Received = z
  .object({
    received: z.number().int(),
    duplicate: z.boolean().describe('The whole request was a replay and was ignored'),
    accepted: z
      .array(z.object({ id: z.string(), submissionId: z.uuid(), status: z.enum(['queued', 'attached']), statusUrl: z.string() }))
      .describe('Leads taken: stored, their intakes start shortly (queued) or they join one already running or waiting (attached)'),
    skipped: z.array(z.object({ index: z.number().int(), submissionId: z.string().nullable(), reason: z.string() })),
  })
  .meta({ id: 'HubspotWebhookReceipt' });

type Accepted = Pick<SubmitResult, 'id' | 'submissionId' | 'status' | 'statusUrl'>;
interface Skipped {
  index: number;
  submissionId: string | null;
  reason: string;
}

/** Every submission of one request: receipts, leads and rejections, in the caller's transaction. */
async function receive(deps: IntakeApiDeps, db: pg.PoolClient, submissions: unknown[]): Promise<{ accepted: Accepted[]; skipped: Skipped[] }> {
  const accepted: Accepted[] = [];
  const skipped: Skipped[] = [];
  const { dedupeWindowMs } = deps.config.api.hubspotWebhook;
  for (const [index, raw] of submissions.entries()) {
    const parsed = parseSubmission(raw);
    if (parsed.eventKey && !(await claimReceipt(db, 'hubspot', parsed.eventKey, parsed.lead ? 'accepted' : 'rejected', {}, dedupeWindowMs))) {
      skipped.push({ index, submissionId: parsed.id ?? null, reason: 'already received (HubSpot retry)' });
      continue;
    }
    if (!parsed.lead) {
      skipped.push({ index, submissionId: parsed.id ?? null, reason: parsed.problem ?? 'unusable submission' });
      await appendAudit(db, { actor: 'hubspot-webhook', kind: 'api', action: 'webhook_submission', outcome: 'rejected', details: { submissionId: parsed.id ?? null, reason: parsed.problem, index } });
      continue;
    }
    const result = await submitLead(deps, parsed.lead, { requestedBy: 'hubspot-webhook' }, db);
    accepted.push({ id: result.id, submissionId: result.submissionId, status: result.status, statusUrl: result.statusUrl });
  }
  return { accepted, skipped };
}

export function webhookRoutes(deps: IntakeApiDeps): AnyRoute[] {
  return [
    defineRoute({
      method: 'post',
      path: '/webhooks/hubspot',
      operationId: 'hubspotFormWebhook',
      summary: 'HubSpot form submissions (signature v3, 5-minute window; replays ignored): one intake per lead',
      tags: ['webhooks'],
      auth: 'signed-webhook',
      responses: {
        200: { description: 'Handled (or a replay, ignored)', schema: Received },
        400: { description: 'No usable lead in the request' },
        401: { description: 'Missing, stale or wrong signature' },
        413: { description: 'More submissions in one request than HUBSPOT_WEBHOOK_MAX_BATCH, or a body over API_BODY_LIMIT' },
      },
      async handler({ req }) {
        const { signature } = verify(deps, req);
        const digest = createHash('sha256').update(signature).digest('hex');
        const submissions: unknown[] = Array.isArray(req.body) ? req.body : [req.body];
        const { maxBatch } = deps.config.api.hubspotWebhook;
        if (submissions.length > maxBatch) {
          throw new HttpProblem({
            title: 'Payload too large',
            status: 413,
            detail: `The request carries ${submissions.length} submissions; at most ${maxBatch} are taken per request (HUBSPOT_WEBHOOK_MAX_BATCH).`,
            maxBatch,
          });
        }
        const outcome = await inTransaction(deps.pool, async (db) => {
          // A signed request can be replayed only while its timestamp is within the window either side of now.
          if (!(await claimReceipt(db, 'hubspot', `signature:${digest}`, 'received', { count: submissions.length }, 2 * SIGNATURE_WINDOW_MS))) return undefined;
          return receive(deps, db, submissions);
        }).catch((err: unknown) => {
          if (err instanceof HttpProblem) throw err;
          // Nothing was stored (rolled back): HubSpot's retry is processed, not ignored as a replay.
          throw new HttpProblem({ title: 'Service unavailable', status: 503, detail: 'The submissions could not be stored right now; retry shortly.' });
        });
        if (!outcome) return { body: { received: submissions.length, duplicate: true, accepted: [], skipped: [] } };
        const { accepted, skipped } = outcome;
        if (accepted.length > 0) submissionSignal(deps.pool).submitted();
        if (accepted.length === 0 && skipped.every((s) => !s.reason.startsWith('already received'))) {
          throw new HttpProblem({ title: 'Bad request', status: 400, detail: `No usable lead: ${skipped.map((s) => `#${s.index} ${s.reason}`).join('; ')}`, skipped });
        }
        return { body: { received: submissions.length, duplicate: false, accepted, skipped } };
      },
    }),
  ];
}
