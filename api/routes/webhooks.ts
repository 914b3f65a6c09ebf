import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { Request } from 'express';
import { z } from 'zod';
import { normaliseEmail, type LeadInput } from '../../lib/prospect.js';
import type { ApiDeps } from '../deps.js';
import { HttpProblem } from '../problem.js';
import { defineRoute, type AnyRoute } from '../route.js';
import { submitLead, type IntakeApiDeps } from './prospects.js';

/**
 * HubSpot form submissions → prospect intakes.
 *
 * Authenticity: HubSpot's v3 request signature,
 * base64(HMAC-SHA256(client secret, method + URI + body + timestamp)), with
 * X-HubSpot-Request-Timestamp no more than 5 minutes away from our clock.
 * Replays (the same signed request again) and repeated submission ids are
 * acknowledged with 200 and ignored, so HubSpot's retries never start a
 * second intake. Leads that cannot be used are listed with a reason and kept
 * in the audit trail: nothing is dropped silently.
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
  id?: string;
  lead?: LeadInput;
  problem?: string;
}

const text = (v: unknown) => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : isObject(v) && typeof v.value === 'string' ? v.value : undefined);
function isObject(v: unknown): v is Record<string, any> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
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
  const id = text(raw.submissionId ?? raw.conversionId ?? raw.eventId ?? raw.objectId ?? raw.vid);
  const lead: Record<string, string> = {};
  for (const [field, value] of Object.entries(values)) {
    const to = FIELD_MAP[field];
    if (to && value.trim()) lead[to] = value.trim();
  }
  const name = lead.name ?? ([lead.firstname, lead.lastname].filter(Boolean).join(' ') || undefined);
  delete lead.firstname;
  delete lead.lastname;
  if (!lead.email) return { id, problem: 'no email field in the submission' };
  const email = normaliseEmail(lead.email);
  if (!email.ok) return { id, problem: email.reason };
  return { id, lead: { ...(lead as unknown as LeadInput), ...(name ? { name: name.slice(0, 200) } : {}), email: email.email, source: 'hubspot-form', notes: lead.notes?.slice(0, 4000) } };
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

/** Claims a receipt key; false when it was claimed before (a replay or a retry). */
async function claim(deps: ApiDeps, key: string, outcome: string, details: Record<string, unknown>): Promise<boolean> {
  const { rowCount } = await deps.pool.query(
    `INSERT INTO webhook_receipts (receipt_key, source, outcome, details) VALUES ($1, 'hubspot', $2, $3) ON CONFLICT (receipt_key) DO NOTHING`,
    [key, outcome, details],
  );
  return (rowCount ?? 0) > 0;
}

const Received = z
  .object({
    received: z.number().int(),
    duplicate: z.boolean().describe('The whole request was a replay and was ignored'),
    started: z.array(z.object({ id: z.string(), status: z.enum(['started', 'attached']), statusUrl: z.string() })),
    skipped: z.array(z.object({ index: z.number().int(), submissionId: z.string().nullable(), reason: z.string() })),
  })
  .meta({ id: 'HubspotWebhookReceipt' });

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
      },
      async handler({ req }) {
        const { signature } = verify(deps, req);
        const digest = createHash('sha256').update(signature).digest('hex');
        const submissions: unknown[] = Array.isArray(req.body) ? req.body : [req.body];
        if (!(await claim(deps, `signature:${digest}`, 'received', { count: submissions.length }))) {
          return { body: { received: submissions.length, duplicate: true, started: [], skipped: [] } };
        }
        const started: { id: string; status: 'started' | 'attached'; statusUrl: string }[] = [];
        const skipped: { index: number; submissionId: string | null; reason: string }[] = [];
        const claimed = [`signature:${digest}`];
        try {
          for (const [index, raw] of submissions.entries()) {
            const parsed = parseSubmission(raw);
            if (parsed.id) {
              if (!(await claim(deps, `submission:${parsed.id}`, parsed.lead ? 'accepted' : 'rejected', {}))) {
                skipped.push({ index, submissionId: parsed.id, reason: 'already received (HubSpot retry)' });
                continue;
              }
              claimed.push(`submission:${parsed.id}`);
            }
            if (!parsed.lead) {
              skipped.push({ index, submissionId: parsed.id ?? null, reason: parsed.problem ?? 'unusable submission' });
              await deps.pool.query(
                `INSERT INTO audit_events (actor, kind, action, outcome, details) VALUES ('hubspot-webhook', 'api', 'webhook_submission', 'rejected', $1)`,
                [{ submissionId: parsed.id ?? null, reason: parsed.problem, index }],
              );
              continue;
            }
            const result = await submitLead(deps, parsed.lead, { requestedBy: 'hubspot-webhook' });
            started.push({ id: result.id, status: result.status, statusUrl: result.statusUrl });
          }
        } catch (err) {
          // Not handled: release the receipts so HubSpot's retry is processed, not ignored as a replay.
          // (Intakes already started are safe to start again: they attach.)
          await deps.pool.query('DELETE FROM webhook_receipts WHERE receipt_key = ANY($1::text[])', [claimed]).catch(() => undefined);
          throw err;
        }
        if (started.length === 0 && skipped.every((s) => !s.reason.startsWith('already received'))) {
          throw new HttpProblem({ title: 'Bad request', status: 400, detail: `No usable lead: ${skipped.map((s) => `#${s.index} ${s.reason}`).join('; ')}`, skipped });
        }
        return { body: { received: submissions.length, duplicate: false, started, skipped } };
      },
    }),
  ];
}
