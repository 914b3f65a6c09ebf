import type pg from 'pg';
import { inTransaction, type Pool } from '../../lib/store/db.js';
import { normaliseEmail, suppressionCandidates, type LeadInput, type SendMode, type SkipReason } from '../../lib/domain/prospect.js';
import { appendIntakeAudit, matchingSuppression, readSettings, writeReadModel, type ProgressStamp } from '../../lib/store/prospects.js';

/**
 * Step 1, screen: normalise the lead and decide whether Prospector may write
 * to this person today. The decision and its counters live in one
 * transaction under one advisory lock, so 50 intakes screened at once cannot
 * all squeeze under a daily cap, and a retried screen returns the decision it
 * already made.
 */

export interface ScreenInput {
  lead: LeadInput;
}

/** A lead after normalisation: its domain known and its source settled. */
export type ScreenedLead = LeadInput & { domain: string; source: string };

/** What an intake started without them (e.g. by a harvest, or `temporal workflow start`) uses: the configuration's. */
export interface IntakeDefaults {
  sender: string;
  mode: SendMode;
  approvalTimeoutMs: number;
}

export type ScreenResult = {
  defaults: IntakeDefaults;
  /** The mode this intake runs in, as the deployment resolved it (lib/domain/send-policy.ts). */
  effectiveMode?: SendMode;
  /** The start asked for send_on_approval and the deployment does not send. */
  modeNarrowed?: boolean;
} & (
  | { accepted: true; lead: ScreenedLead }
  | { accepted: false; reason: SkipReason; detail: string; lead?: ScreenedLead }
);

/** Serialises screening decisions (caps are counted, then claimed). */
const SCREEN_LOCK = 'prospector:intake-screen';

export async function screenLead(pool: Pool, stamp: ProgressStamp, input: ScreenInput, defaults: IntakeDefaults): Promise<ScreenResult> {
  const normalised = normaliseEmail(input.lead?.email);
  if (!normalised.ok) {
    const skipped = { ...stamp, stage: 'SKIPPED' as const };
    await inTransaction(pool, async (db) => {
      await appendIntakeAudit(db, skipped, { kind: 'step', action: 'screen', outcome: 'skipped', details: { reason: 'invalid_email', detail: normalised.reason } });
      await writeReadModel(db, skipped, { reason: `invalid_email: ${normalised.reason}` });
    });
    return { defaults, accepted: false, reason: 'invalid_email', detail: normalised.reason };
  }
  const lead = cleanLead(input.lead, normalised.email, normalised.domain);

  return inTransaction(pool, async (db) => {
    await db.query('SELECT pg_advisory_xact_lock(hashtext($1))', [SCREEN_LOCK]);
    const decision = (await earlierDecision(db, stamp.intakeKey)) ?? (await decide(db, stamp, lead, defaults.sender));
    const end = decision.accepted ? stamp : { ...stamp, stage: 'SKIPPED' as const };
    await appendIntakeAudit(db, end, {
      kind: 'step',
      action: 'screen',
      outcome: decision.accepted ? 'accepted' : 'skipped',
      details: decision.accepted ? { email: lead.email, domain: lead.domain } : { reason: decision.reason, detail: decision.detail },
    });
    await writeReadModel(db, end, decision.accepted ? {} : { reason: `${decision.reason}: ${decision.detail}` });
    return decision.accepted ? { defaults, accepted: true, lead } : { defaults, accepted: false, reason: decision.reason, detail: decision.detail, lead };
  });
}

type Decision = { accepted: true } | { accepted: false; reason: SkipReason; detail: string };

async function earlierDecision(db: pg.PoolClient, intakeKey: string): Promise<Decision | undefined> {
  const { rows } = await db.query('SELECT accepted, reason FROM intakes WHERE intake_key = $1', [intakeKey]);
  if (!rows[0]) return undefined;
  if (rows[0].accepted) return { accepted: true };
  const [reason, ...detail] = String(rows[0].reason).split(': ');
  return { accepted: false, reason: reason as SkipReason, detail: detail.join(': ') };
}

async function decide(db: pg.PoolClient, stamp: ProgressStamp, lead: ScreenedLead, sender: string): Promise<Decision> {
  const decision = await firstReasonToSkip(db, stamp.intakeKey, lead, sender);
  await db.query(
    `INSERT INTO intakes (intake_key, workflow_id, run_id, email, domain, sender, accepted, reason)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [stamp.intakeKey, stamp.workflowId, stamp.runId, lead.email, lead.domain, sender, decision.accepted, decision.accepted ? null : `${decision.reason}: ${decision.detail}`],
  );
  return decision;
}

async function firstReasonToSkip(db: pg.PoolClient, intakeKey: string, lead: ScreenedLead, sender: string): Promise<Decision> {
  const settings = await readSettings(db);
  if (settings.paused) {
    return { accepted: false, reason: 'paused', detail: `intake is paused${settings.pausedReason ? ` (${settings.pausedReason})` : ''}` };
  }
  const suppressed = await matchingSuppression(db, suppressionCandidates(lead.email, lead.domain));
  if (suppressed) {
    return { accepted: false, reason: 'suppressed', detail: `matches suppression ${suppressed.pattern}${suppressed.reason ? ` (${suppressed.reason})` : ''}` };
  }
  if (settings.recontactWindowDays > 0) {
    const { rows } = await db.query(
      `SELECT created_at, workflow_id FROM intakes
        WHERE email = $1 AND accepted AND intake_key <> $2 AND COALESCE(final_stage, '') <> 'FAILED'
          AND created_at > now() - make_interval(days => $3)
        ORDER BY created_at DESC LIMIT 1`,
      [lead.email, intakeKey, settings.recontactWindowDays],
    );
    if (rows[0]) {
      return {
        accepted: false,
        reason: 'recontact_window',
        detail: `already contacted ${new Date(rows[0].created_at).toISOString()}; the re-contact window is ${settings.recontactWindowDays} days`,
      };
    }
  }
  const today = await countsToday(db, lead.domain, sender);
  if (today.domain >= settings.domainDailyCap) {
    return { accepted: false, reason: 'domain_daily_cap', detail: `${today.domain} intakes for ${lead.domain} today; the cap is ${settings.domainDailyCap}` };
  }
  if (today.sender >= settings.senderDailyCap) {
    return { accepted: false, reason: 'sender_daily_cap', detail: `${today.sender} intakes for ${sender} today; the cap is ${settings.senderDailyCap}` };
  }
  return { accepted: true };
}

async function countsToday(db: pg.PoolClient, domain: string, sender: string): Promise<{ domain: number; sender: number }> {
  const { rows } = await db.query(
    `SELECT count(*) FILTER (WHERE domain = $1)::int AS domain, count(*) FILTER (WHERE sender = $2)::int AS sender
       FROM intakes WHERE accepted AND day = (now() AT TIME ZONE 'UTC')::date AND (domain = $1 OR sender = $2)`,
    [domain, sender],
  );
  return rows[0];
}

const text = (value: unknown, max: number): string | undefined => {
  if (typeof value !== 'string') return undefined;
  const trimmed = value.replace(/\u0000/g, '').replace(/\s+/g, ' ').trim();
  return trimmed ? trimmed.slice(0, max) : undefined;
};

function validTimeZone(zone: string | undefined): string | undefined {
  if (!zone) return undefined;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return zone;
  } catch {
    return undefined;
  }
}

/** The lead as later steps see it: trimmed, bounded, notes kept as plain data. */
function cleanLead(lead: LeadInput, email: string, domain: string): ScreenedLead {
  const notes = typeof lead.notes === 'string' ? lead.notes.replace(/\u0000/g, '').trim().slice(0, 4000) : undefined;
  return {
    email,
    domain,
    name: text(lead.name, 200),
    company: text(lead.company, 200),
    title: text(lead.title, 200),
    phone: text(lead.phone, 50),
    timeZone: validTimeZone(text(lead.timeZone, 64)),
    notes: notes || undefined,
    source: text(lead.source, 40) ?? 'api',
  };
}

/** The end of an intake, for the contact history (a FAILED intake does not count as contact). */
export async function recordFinalStage(db: Pool | pg.PoolClient, intakeKey: string, stage: string): Promise<void> {
  await db.query('UPDATE intakes SET final_stage = $2, updated_at = now() WHERE intake_key = $1', [intakeKey, stage]);
}
