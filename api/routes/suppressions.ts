import { z } from 'zod';
import { addSuppression, listSuppressions, readSettings, removeSuppression, updateSettings, type IntakeSettings } from '../../lib/store/settings.js';
import { appendAudit } from '../../lib/store/audit.js';
import { parseSuppressionPattern } from '../../lib/domain/email.js';
import { SENDER_PITCH_MAX } from '../../lib/domain/grounding-facts.js';
import type { ApiDeps } from '../deps.js';
import { problems } from '../problem.js';
import { defineRoute, type AnyRoute, type Caller } from '../route.js';

/**
 * The screening policy operators control: the suppression list (addresses and
 * `*@domain`), and the intake settings (global pause, re-contact window,
 * daily caps per domain and per sender, the sender's company, product
 * description, zone and hours).
 * Reads need prospects:read; changes need admin and are audited.
 */

const timestamp = z.iso.datetime({ offset: true });

const SuppressionView = z
  .object({ pattern: z.string(), kind: z.enum(['address', 'domain']), reason: z.string().nullable(), createdBy: z.string().nullable(), createdAt: timestamp })
  .meta({ id: 'Suppression' });

const SuppressionBody = z
  .object({
    pattern: z
      .string()
      .max(320)
      .superRefine((value, ctx) => {
        const parsed = parseSuppressionPattern(value);
        if (!parsed.ok) ctx.addIssue({ code: 'custom', message: parsed.reason });
      })
      .describe('name@domain, or *@domain for a whole domain and its subdomains'),
    reason: z.string().max(500).transform((v) => v.trim()).optional(),
  })
  .strict()
  .meta({ id: 'SuppressionRequest' });

const hhmm = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'expected HH:MM');

const Settings = z
  .object({
    paused: z.boolean().describe('Global pause: every new lead is SKIPPED (reason paused) while true'),
    pausedReason: z.string().nullable(),
    recontactWindowDays: z.number().int().describe('A person contacted within this many days is SKIPPED (0 = off)'),
    domainDailyCap: z.number().int().describe('Intakes per prospect domain per UTC day'),
    senderDailyCap: z.number().int().describe('Intakes per sending mailbox per UTC day'),
    senderCompany: z.string(),
    senderPitch: z.string().nullable().describe("What the sender sells, in the operator's words: the writer's only evidence about our product"),
    senderTimeZone: z.string(),
    workingHoursStart: z.string(),
    workingHoursEnd: z.string(),
    updatedBy: z.string().nullable(),
    updatedAt: timestamp,
  })
  .meta({ id: 'ScreeningPolicy' });

const SettingsPatch = z
  .object({
    paused: z.boolean().optional(),
    pausedReason: z.string().max(500).transform((v) => v.trim()).nullable().optional(),
    recontactWindowDays: z.number().int().min(0).max(3650).optional(),
    domainDailyCap: z.number().int().min(0).max(1_000_000).optional(),
    senderDailyCap: z.number().int().min(0).max(1_000_000).optional(),
    senderCompany: z.string().trim().min(1).max(200).optional(),
    senderPitch: z
      .string()
      .max(SENDER_PITCH_MAX, `senderPitch is longer than ${SENDER_PITCH_MAX} characters`)
      .transform((v) => v.trim() || null)
      .nullable()
      .optional()
      .describe(`What the sender sells (at most ${SENDER_PITCH_MAX} characters); null or "" clears it`),
    senderTimeZone: z
      .string()
      .max(64)
      .refine((zone) => {
        try {
          new Intl.DateTimeFormat('en-US', { timeZone: zone });
          return true;
        } catch {
          return false;
        }
      }, 'expected an IANA time zone')
      .optional(),
    workingHoursStart: hhmm.optional(),
    workingHoursEnd: hhmm.optional(),
  })
  .strict()
  .refine((p) => Object.keys(p).length > 0, 'nothing to change')
  .meta({ id: 'ScreeningPolicyPatch' });

const who = (caller: Caller | undefined) => (caller ? `api-key:${caller.name}` : 'api');

async function audit(deps: ApiDeps, actor: string, action: string, outcome: string, details: Record<string, unknown>) {
  await appendAudit(deps.pool, { actor, kind: 'api', action, outcome, details });
}

export function suppressionRoutes(deps: ApiDeps): AnyRoute[] {
  return [
    defineRoute({
      method: 'get',
      path: '/suppressions',
      operationId: 'listSuppressions',
      summary: 'The suppression list, by pattern',
      tags: ['screening'],
      auth: { scope: 'prospects:read' },
      query: z.object({
        limit: z.coerce.number().int().min(1).max(500).default(100),
        after: z.string().max(320).optional().describe('Last pattern of the previous page'),
      }),
      responses: { 200: { description: 'One page', schema: z.object({ items: z.array(SuppressionView), nextAfter: z.string().nullable() }).meta({ id: 'SuppressionList' }) } },
      async handler({ query }) {
        const items = await listSuppressions(deps.pool, { limit: query.limit + 1, after: query.after });
        const page = items.slice(0, query.limit);
        return { body: { items: page, nextAfter: items.length > query.limit ? page.at(-1)!.pattern : null } };
      },
    }),

    defineRoute({
      method: 'post',
      path: '/suppressions',
      operationId: 'addSuppression',
      summary: 'Never write to this address (or to anyone at *@domain) again',
      tags: ['screening'],
      auth: { scope: 'admin' },
      body: SuppressionBody,
      responses: { 201: { description: 'Added', schema: SuppressionView }, 200: { description: 'Already on the list', schema: SuppressionView } },
      async handler({ body, caller }) {
        const parsed = parseSuppressionPattern(body.pattern);
        if (!parsed.ok) throw problems.badRequest(parsed.reason);
        const { suppression, created } = await addSuppression(deps.pool, { pattern: parsed.pattern, kind: parsed.kind, reason: body.reason, createdBy: who(caller) });
        await audit(deps, who(caller), 'suppression_add', created ? 'added' : 'exists', { pattern: parsed.pattern, reason: body.reason ?? null });
        return { status: created ? 201 : 200, body: suppression };
      },
    }),

    defineRoute({
      method: 'delete',
      path: '/suppressions/:pattern',
      operationId: 'removeSuppression',
      summary: 'Take a pattern off the suppression list',
      tags: ['screening'],
      auth: { scope: 'admin' },
      params: z.object({ pattern: z.string().min(1).max(320) }),
      responses: { 204: { description: 'Removed' } },
      async handler({ params, caller }) {
        const parsed = parseSuppressionPattern(params.pattern);
        const pattern = parsed.ok ? parsed.pattern : params.pattern;
        if (!(await removeSuppression(deps.pool, pattern))) throw problems.notFound(`${pattern} is not on the suppression list`);
        await audit(deps, who(caller), 'suppression_remove', 'removed', { pattern });
        return { status: 204 };
      },
    }),

    defineRoute({
      method: 'get',
      path: '/screening',
      operationId: 'getScreeningPolicy',
      summary: 'The screening policy: pause switch, re-contact window, daily caps, sender profile',
      tags: ['screening'],
      auth: { scope: 'prospects:read' },
      responses: { 200: { description: 'Current policy', schema: Settings } },
      async handler() {
        return { body: await readSettings(deps.pool) };
      },
    }),

    defineRoute({
      method: 'patch',
      path: '/screening',
      operationId: 'updateScreeningPolicy',
      summary: 'Change the screening policy (e.g. {"paused": true} is the global pause switch)',
      tags: ['screening'],
      auth: { scope: 'admin' },
      body: SettingsPatch,
      responses: { 200: { description: 'The policy after the change', schema: Settings } },
      async handler({ body, caller }) {
        if (body.workingHoursStart && body.workingHoursEnd && body.workingHoursStart >= body.workingHoursEnd) {
          throw problems.badRequest('workingHoursStart must be before workingHoursEnd');
        }
        const patch: Partial<Omit<IntakeSettings, 'updatedAt'>> = { ...body, updatedBy: who(caller) };
        const settings = await updateSettings(deps.pool, patch);
        await audit(deps, who(caller), 'screening_update', 'updated', { changes: body });
        return { body: settings };
      },
    }),
  ];
}
