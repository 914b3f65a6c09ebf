import { inTransaction, type Pool } from '../../lib/store/db.js';
import { suppressionCandidates, type LeadInput, type SendMode, type SkipReason } from '../../lib/domain/prospect.js';
import { normaliseEmail } from '../../lib/domain/email.js';
import { cleanLead, firstReasonToSkip, type IntakeDefaults, type ScreenDecision, type ScreenedLead } from '../../lib/domain/screening.js';
import { countsToday, earlierDecision, lastContact, lockScreening, recordDecision } from '../../lib/store/intakes.js';
import { appendIntakeAudit, writeReadModel, type ProgressStamp } from '../../lib/store/prospects.js';
import { matchingSuppression, readSettings } from '../../lib/store/settings.js';

export type { IntakeDefaults, ScreenedLead };

/**
 * Step 1, screen: normalise the lead and decide whether Prospector may write
 * to this person today (lib/domain/screening.ts). The decision and its
 * counters live in one transaction under one advisory lock, and a retried
 * screen returns the decision it already made.
 */

export interface ScreenInput {
  lead: LeadInput;
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
    await lockScreening(db);
    let decision: ScreenDecision | undefined = await earlierDecision(db, stamp.intakeKey);
    if (!decision) {
      const settings = await readSettings(db);
      decision = firstReasonToSkip(lead, defaults.sender, {
        settings,
        suppression: await matchingSuppression(db, suppressionCandidates(lead.email, lead.domain)),
        lastContactAt: await lastContact(db, lead.email, stamp.intakeKey, settings.recontactWindowDays),
        today: await countsToday(db, lead.domain, defaults.sender),
      });
      await recordDecision(db, { intakeKey: stamp.intakeKey, workflowId: stamp.workflowId, runId: stamp.runId, email: lead.email, domain: lead.domain, sender: defaults.sender }, decision);
    }
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
