import { randomUUID } from 'node:crypto';
import type { Request } from 'express';
import { z } from 'zod';
import { DECISION_ACTIONS, type DecisionAction } from '../../lib/domain/approval-token.js';
import { hasNul } from '../../lib/domain/text.js';
import { APPROVAL_STATES, durationMs, intakeWorkflowId, SEND_MODES, STAGES } from '../../lib/domain/prospect.js';
import { normaliseEmail, unicodeEmail } from '../../lib/domain/email.js';
import type { ApiDeps } from '../deps.js';
import { auditOfIntake, decisionOutcome } from '../../lib/store/audit.js';
import { listProspects } from '../../lib/store/prospects.js';
import { HttpProblem } from '../problem.js';
import { defineRoute, type AnyRoute } from '../route.js';
import { statusUrl, submitLead, type IntakeApiDeps } from '../services/submissions.js';
import { liveStatus, prepareDecision, prospectRow, sendDecision, temporalCommand, type DecisionInput } from '../services/decisions.js';

/**
 * Prospects: submit a lead (stored in the intake outbox, started by the
 * dispatcher: api/services/intake-dispatcher.ts), list and read them from the read
 * model, and drive the approval gate by signal. The API holds no state of its
 * own: the workflow decides, and refuses a stale approval even if the read
 * model let it through.
 */

const MAX_APPROVAL_TIMEOUT_MS = 30 * 86_400_000;
const MIN_APPROVAL_TIMEOUT_MS = 1_000;

const timestamp = z.iso.datetime({ offset: true });

// NUL characters never reach these schemas: api/route.ts refuses them in any request.
const text = (max: number) => z.string().max(max).transform((v) => v.trim());

function validTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

export const emailField = z
  .string()
  .max(320)
  .superRefine((value, ctx) => {
    const result = normaliseEmail(value);
    if (!result.ok) ctx.addIssue({ code: 'custom', message: result.reason });
  })
  .describe('The lead\'s address; normalised (case, +tags) to one prospect per person');

const LeadFields = {
  email: emailField,
  name: text(200).optional(),
  company: text(200).optional(),
  title: text(200).optional(),
  phone: text(50).optional(),
  timeZone: z.string().max(64).refine(validTimeZone, 'expected an IANA time zone such as "Europe/Berlin"').optional(),
  notes: text(4000).optional().describe('Free text from the lead. Treated as data, never as instructions.'),
};

const SubmitBody = z
  .object({
    ...LeadFields,
    source: z.string().trim().min(1).max(40).optional().describe('Where the lead came from (default "api")'),
    mode: z.enum(SEND_MODES).optional().describe('draft_only (default from SEND_MODE) or send_on_approval'),
    approvalTimeout: z
      .union([z.string().max(20), z.number().int()])
      .optional()
      .refine((v) => v === undefined || (durationMs(v) ?? 0) >= MIN_APPROVAL_TIMEOUT_MS, 'expected a duration such as "72h" or milliseconds')
      .refine((v) => v === undefined || (durationMs(v) ?? 0) <= MAX_APPROVAL_TIMEOUT_MS, 'at most 30 days')
      .describe('How long the draft waits for a decision before EXPIRED (default APPROVAL_TIMEOUT, 72h)'),
  })
  .strict()
  .meta({ id: 'ProspectSubmission' });

const Submitted = z
  .object({
    id: z.string().describe('Workflow id, derived from the normalised email'),
    submissionId: z.uuid().describe('This submission; its audit rows (submit, dispatch) carry it'),
    status: z
      .enum(['queued', 'attached'])
      .describe(
        'queued: the lead is stored and its intake starts within moments (while the workflow service is down, as soon as it is back); ' +
          'attached: an intake for this person is already running or waiting to start, and this submission joins it',
      ),
    email: z.string(),
    statusUrl: z.string(),
  })
  .meta({ id: 'ProspectSubmitted' });

const ProspectSummary = z
  .object({
    id: z.string(),
    runId: z.string().nullable(),
    email: z.string().describe('The address as stored and used: an internationalised domain in its punycode (xn--) form'),
    emailUnicode: z.string().describe('The same address as a person reads it (Unicode domain labels)'),
    domain: z.string(),
    name: z.string().nullable(),
    company: z.string().nullable(),
    owner: z.string().nullable(),
    source: z.string(),
    stage: z.string(),
    approvalState: z.string(),
    mode: z.string(),
    draftVersion: z.number().int(),
    subject: z.string().nullable(),
    reason: z.string().nullable(),
    approvalDeadline: timestamp.nullable(),
    createdAt: timestamp,
    updatedAt: timestamp,
  })
  .meta({ id: 'ProspectSummary' });

const ProspectList = z.object({ items: z.array(ProspectSummary), nextCursor: z.string().nullable() }).meta({ id: 'ProspectList' });

const AuditRow = z.object({ at: timestamp, kind: z.string(), action: z.string(), outcome: z.string(), actor: z.string(), details: z.record(z.string(), z.unknown()) });

const ProspectDetail = ProspectSummary.extend({
  draft: z.record(z.string(), z.unknown()).nullable().describe('Current draft: version, subject, body, Gmail ids, facts used'),
  slots: z.array(z.record(z.string(), z.unknown())),
  facts: z.array(z.record(z.string(), z.unknown())).describe('Grounding facts the writer was given'),
  grounding: z
    .object({
      attempts: z.number().int(),
      problems: z.array(z.string()).describe('Why the last draft was rejected, in words for people: each rejected sentence quoted, with why'),
      rejections: z
        .array(z.object({ sentence: z.number().int(), text: z.string(), kind: z.string(), reason: z.string() }))
        .describe('The rejected sentences: position in subject + body, text, what kind of claim lacks support, and why'),
    })
    .nullable()
    .describe('How the writer\'s drafts were judged; null before the write step'),
  decision: z.record(z.string(), z.unknown()).nullable(),
  refusals: z.array(z.record(z.string(), z.unknown())),
  links: z.record(z.string(), z.string()),
  live: z.record(z.string(), z.unknown()).nullable().describe('The workflow\'s `status` query, when a worker answered in time'),
  audit: z.array(AuditRow),
}).meta({ id: 'ProspectDetail' });

const IdParams = z.object({ id: z.string().min(1).max(400).describe('Workflow id (prospect-<email>) or the email itself') });

const Signalled = z
  .object({
    accepted: z.boolean(),
    id: z.string(),
    requestId: z.string(),
    outcome: z.string().nullable().describe('With ?wait=true: what the workflow did (approved, applied, rejected, refused); null when still pending'),
    reason: z.string().nullable(),
    statusUrl: z.string(),
  })
  .meta({ id: 'SignalAccepted' });

const WaitQuery = z.object({ wait: z.enum(['true', 'false']).optional().describe('Wait up to 10 s for the workflow to apply the signal') });

/** The approver is never named in a request: it is the identity the API key belongs to. */
const ApproveBody = z
  .object({
    version: z.number().int().min(1).describe('The draft version the approver saw'),
    reason: text(1000).optional(),
    subject: text(200).optional().describe('Edit-then-approve: the new subject'),
    body: z.string().max(5000).optional().describe('Edit-then-approve: the new body'),
  })
  .strict()
  .meta({ id: 'ApproveRequest' });

const RejectBody = z
  .object({ reason: z.string().trim().min(1).max(1000), version: z.number().int().min(1).optional() })
  .strict()
  .meta({ id: 'RejectRequest' });

const EditBody = z
  .object({
    version: z.number().int().min(1),
    subject: text(200).optional(),
    body: z.string().max(5000).optional(),
    reason: text(1000).optional(),
  })
  .strict()
  .refine((b) => b.subject !== undefined || b.body !== undefined, { message: 'an edit needs a subject or a body', path: ['body'] })
  .meta({ id: 'EditRequest' });

const TokenBody = z
  .object({
    action: z.enum(DECISION_ACTIONS).describe('The decision the token carries'),
    version: z.number().int().min(1).optional().describe('The draft version reviewed (approve, edit)'),
    reason: text(1000).optional(),
    subject: text(200).optional(),
    body: z.string().max(5000).optional(),
  })
  .strict()
  .refine((b) => b.action === 'reject' || b.version !== undefined, { message: 'approve and edit need the draft version', path: ['version'] })
  .refine((b) => b.action !== 'edit' || b.subject !== undefined || b.body !== undefined, { message: 'an edit needs a subject or a body', path: ['body'] })
  .meta({ id: 'ApprovalTokenRequest' });

const IssuedToken = z
  .object({
    id: z.string(),
    action: z.enum(DECISION_ACTIONS),
    approver: z.string().describe('Your API key\'s identity: the only approver the token can name'),
    token: z.string(),
    expiresAt: timestamp,
    contentHash: z.string().describe('SHA-256 of exactly the content the decision binds (recipients, subject, body, thread headers)'),
    signal: z.object({ name: z.enum(DECISION_ACTIONS), input: z.record(z.string(), z.unknown()) }).describe('The signal to send from any Temporal client'),
    command: z.string().describe('The same as a `temporal workflow signal` command line'),
  })
  .meta({ id: 'ApprovalToken' });

const ListQuery = z.object({
  stage: z
    .string()
    .optional()
    .refine((v) => !v || v.split(',').every((s) => (STAGES as readonly string[]).includes(s.trim())), `expected stages from ${STAGES.join(', ')}`)
    .describe('One stage or a comma-separated list, e.g. AWAITING_APPROVAL'),
  approvalState: z.enum(APPROVAL_STATES).optional(),
  domain: z.string().max(253).optional(),
  owner: z.string().max(320).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(200).optional().describe('nextCursor of the previous page'),
});

// ---- read model ----------------------------------------------------------------------

const iso = (v: unknown) => (v ? new Date(v as string).toISOString() : null);

function summary(row: Record<string, any>) {
  return {
    id: row.id,
    runId: row.run_id ?? null,
    email: row.email,
    emailUnicode: unicodeEmail(row.email),
    domain: row.domain,
    name: row.name ?? null,
    company: row.company ?? null,
    owner: row.owner ?? null,
    source: row.source,
    stage: row.stage,
    approvalState: row.approval_state,
    mode: row.mode,
    draftVersion: row.draft_version,
    subject: row.subject ?? null,
    reason: row.reason ?? null,
    approvalDeadline: iso(row.approval_deadline),
    createdAt: iso(row.created_at)!,
    updatedAt: iso(row.updated_at)!,
  };
}

/** A path id may be the workflow id or the person's email. */
function workflowIdOf(id: string): string {
  if (id.startsWith('prospect-')) return id;
  const email = normaliseEmail(id);
  return email.ok ? intakeWorkflowId(email.email) : id;
}

function encodeCursor(at: string, id: string): string {
  return Buffer.from(JSON.stringify([at, id])).toString('base64url');
}

function decodeCursor(cursor: string): [string, string] {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && typeof value[1] === 'string' && !Number.isNaN(Date.parse(value[0])) && !hasNul(value[0] + value[1])) {
      return value as [string, string];
    }
  } catch {
    /* fall through */
  }
  throw new HttpProblem({ title: 'Invalid request', status: 400, detail: 'query.cursor: not a cursor this API returned', errors: [{ field: 'query.cursor', message: 'not a cursor this API returned' }] });
}

// ---- signals ---------------------------------------------------------------------------

/** The request id of a signal: the Idempotency-Key header when sent (a retried call lands once). */
function requestIdOf(req: Request): string {
  const key = req.get('idempotency-key');
  return key && /^[\w.:-]{1,100}$/.test(key) ? key : randomUUID();
}

const OUTCOMES: Record<string, string[]> = { approve: ['approve'], reject: ['reject'], edit: ['edit'] };

/** With ?wait=true: the audit row the workflow wrote for this request (approved, applied, rejected, refused). */
async function awaitOutcome(deps: ApiDeps, id: string, requestId: string, action: string, timeoutMs = 10_000): Promise<{ outcome: string | null; reason: string | null }> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const found = await decisionOutcome(deps.pool, id, requestId, OUTCOMES[action]!);
    if (found) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { outcome: null, reason: null };
}

async function answer(deps: ApiDeps, id: string, requestId: string, action: string, wait: boolean) {
  const result = wait ? await awaitOutcome(deps, id, requestId, action) : { outcome: null, reason: null };
  const done = result.outcome !== null;
  return {
    status: done ? 200 : 202,
    body: { accepted: result.outcome !== 'refused', id, requestId, outcome: result.outcome, reason: result.reason, statusUrl: statusUrl(id) },
  };
}

// ---- routes ------------------------------------------------------------------------------

export function prospectRoutes(deps: IntakeApiDeps): AnyRoute[] {
  return [
    defineRoute({
      method: 'post',
      path: '/prospects',
      operationId: 'createProspect',
      summary: 'Submit a lead: stored at once, its intake starts within moments (or it joins the one already running for that person)',
      tags: ['prospects'],
      auth: { scope: 'prospects:write' },
      body: SubmitBody,
      responses: { 202: { description: 'Accepted: the lead is stored and its intake starts shortly; follow statusUrl', schema: Submitted } },
      async handler({ body, caller }) {
        const { mode, approvalTimeout, ...lead } = body;
        const result = await submitLead(deps, lead, { mode, approvalTimeout, requestedBy: caller ? `api-key:${caller.name}` : 'api', keyId: caller?.keyId });
        return { status: 202, body: result, headers: { location: result.statusUrl } };
      },
    }),

    defineRoute({
      method: 'get',
      path: '/prospects',
      operationId: 'listProspects',
      summary: 'List prospects from the read model, newest activity first, filtered by stage, approval state, domain or owner',
      tags: ['prospects'],
      auth: { scope: 'prospects:read' },
      query: ListQuery,
      responses: { 200: { description: 'One page', schema: ProspectList } },
      async handler({ query }) {
        const rows = await listProspects(
          deps.pool,
          { stages: query.stage?.split(',').map((s) => s.trim()), approvalState: query.approvalState, domain: query.domain?.toLowerCase(), owner: query.owner },
          query.limit + 1,
          query.cursor ? decodeCursor(query.cursor) : undefined,
        );
        const page = rows.slice(0, query.limit);
        const last = page.at(-1);
        return { body: { items: page.map(summary), nextCursor: rows.length > query.limit && last ? encodeCursor(last.cursor_at, last.id) : null } };
      },
    }),

    defineRoute({
      method: 'get',
      path: '/prospects/:id',
      operationId: 'getProspect',
      summary: 'One prospect: stage, draft, slots, grounding facts, decision, refusals, the live workflow status and its audit trail',
      tags: ['prospects'],
      auth: { scope: 'prospects:read' },
      params: IdParams,
      responses: { 200: { description: 'The prospect', schema: ProspectDetail } },
      async handler({ params }) {
        const id = workflowIdOf(params.id);
        const row = await prospectRow(deps, id);
        const [live, audit] = await Promise.all([liveStatus(deps, id), auditOfIntake(deps.pool, id, row.intake_key)]);
        const data = row.data ?? {};
        const ui = `${deps.config.temporal.uiUrl}/namespaces/${encodeURIComponent(deps.config.temporal.namespace)}/workflows/${encodeURIComponent(id)}`;
        return {
          body: {
            ...summary(row),
            draft: (live?.draft as Record<string, unknown> | undefined) ?? data.draft ?? null,
            slots: live?.slots ?? data.slots ?? [],
            facts: live?.facts ?? data.facts ?? [],
            grounding: groundingOf(live?.grounding ?? data.grounding),
            decision: live?.decision ?? data.decision ?? null,
            refusals: live?.refusals ?? refusalsFrom(audit),
            links: { self: statusUrl(id), temporal: ui },
            live: live as Record<string, unknown> | null,
            audit: audit.map((a) => ({ at: iso(a.at)!, kind: a.kind, action: a.action, outcome: a.outcome, actor: a.actor, details: a.details })),
          },
        };
      },
    }),

    decisionRoute(deps, {
      action: 'approve',
      operationId: 'approveProspect',
      summary: 'Approve the draft version you reviewed (optionally with an edited subject/body: edit-then-approve), as your API key\'s identity',
      applied: 'outcome approved or refused',
      body: ApproveBody,
      decision: (b) => ({ action: 'approve', version: b.version, reason: b.reason, edit: editOf(b) }),
    }),
    decisionRoute(deps, {
      action: 'reject',
      operationId: 'rejectProspect',
      summary: 'Reject the draft: the intake ends REJECTED and the Gmail draft is deleted',
      applied: 'outcome rejected',
      body: RejectBody,
      // Rejecting needs no version: any draft may be turned down.
      decision: (b) => ({ action: 'reject', version: b.version, reason: b.reason }),
    }),
    decisionRoute(deps, {
      action: 'edit',
      operationId: 'editProspectDraft',
      summary: 'Edit the draft version you reviewed: the Gmail draft is updated and becomes version+1',
      applied: 'outcome applied or refused',
      body: EditBody,
      decision: (b) => ({ action: 'edit', version: b.version, reason: b.reason, edit: editOf(b) }),
    }),

    defineRoute({
      method: 'post',
      path: '/prospects/:id/approval-token',
      operationId: 'issueApprovalToken',
      summary: 'A signed approval token for one decision by you, to send as a raw Temporal signal (required in production)',
      tags: ['approvals'],
      auth: { scope: 'approvals:write' },
      params: IdParams,
      body: TokenBody,
      responses: { 200: { description: 'The token, the signal that carries it and the `temporal` command line', schema: IssuedToken } },
      async handler({ params, body, caller }) {
        const id = workflowIdOf(params.id);
        const prepared = await prepareDecision(deps, id, caller, { action: body.action, version: body.version, reason: body.reason, edit: editOf(body) });
        return {
          headers: { 'cache-control': 'no-store' },
          body: {
            id,
            action: body.action,
            approver: prepared.approver,
            token: prepared.token,
            expiresAt: prepared.expiresAt,
            contentHash: prepared.contentHash,
            signal: { name: body.action, input: prepared.payload },
            command: temporalCommand(prepared, body.action, deps.config.temporal.namespace),
          },
        };
      },
    }),
  ];
}

const editOf = (b: { subject?: string; body?: string }) =>
  b.subject !== undefined || b.body !== undefined ? { ...(b.subject !== undefined ? { subject: b.subject } : {}), ...(b.body !== undefined ? { body: b.body } : {}) } : undefined;

/** The writer's judgement as the workflow or the read model holds it; rows written before rejections were kept have none. */
function groundingOf(g: { attempts?: number; problems?: string[]; rejections?: unknown[] } | undefined | null) {
  if (!g) return null;
  return { attempts: g.attempts ?? 1, problems: g.problems ?? [], rejections: (g.rejections ?? []) as { sentence: number; text: string; kind: string; reason: string }[] };
}

/** Refusals from the audit trail, newest last, when the workflow cannot be asked. */
function refusalsFrom(rows: { at: unknown; action: string; outcome: string; actor: string; details: Record<string, any> }[]) {
  return rows
    .filter((a) => a.outcome === 'refused')
    .slice(-20)
    .map((a) => ({ at: iso(a.at), signal: a.action, by: a.actor, version: a.details?.version ?? undefined, reason: a.details?.reason ?? '', requestId: a.details?.requestId ?? undefined }));
}

/**
 * One operator decision on a waiting draft (approve, reject, edit), taken as
 * the caller's identity: refused early with the reason (403 not an approver,
 * 409 stale or decided, 422 bad edit), else signed and delivered as the signal
 * of that name; with ?wait=true answered once the workflow applied it.
 */
function decisionRoute<B>(
  deps: IntakeApiDeps,
  d: {
    action: DecisionAction;
    operationId: string;
    summary: string;
    applied: string;
    body: z.ZodType<B>;
    decision: (body: B) => DecisionInput;
  },
): AnyRoute {
  return defineRoute({
    method: 'post',
    path: `/prospects/:id/${d.action}`,
    operationId: d.operationId,
    summary: d.summary,
    tags: ['approvals'],
    auth: { scope: 'approvals:write' },
    params: IdParams,
    query: WaitQuery,
    body: d.body,
    responses: {
      200: { description: `Applied by the workflow (?wait=true): ${d.applied}`, schema: Signalled },
      202: { description: 'Signal delivered; the workflow applies it', schema: Signalled },
    },
    async handler({ params, body, query, caller, req }) {
      const id = workflowIdOf(params.id);
      const prepared = await prepareDecision(deps, id, caller, d.decision(body));
      const requestId = await sendDecision(deps, prepared, d.action, requestIdOf(req));
      return answer(deps, id, requestId, d.action, query.wait === 'true');
    },
  }) as AnyRoute;
}
