import type { LeadInput, SendMode, SkipReason } from './prospect.js';
import { withoutNul } from './text.js';

/**
 * The screening policy: may Prospector write to this person today? Pure: the
 * facts (policy settings, a matching suppression, the last contact, today's
 * counts) are read by the screening step and judged here, in this order.
 */

/** A lead after normalisation: its domain known and its source settled. */
export type ScreenedLead = LeadInput & { domain: string; source: string };

export type ScreenDecision = { accepted: true } | { accepted: false; reason: SkipReason; detail: string };

export interface ScreenFacts {
  settings: { paused: boolean; pausedReason: string | null; recontactWindowDays: number; domainDailyCap: number; senderDailyCap: number };
  suppression?: { pattern: string; reason: string | null };
  /** When this person was last contacted inside the re-contact window (a FAILED intake does not count). */
  lastContactAt?: string;
  today: { domain: number; sender: number };
}

export function firstReasonToSkip(lead: ScreenedLead, sender: string, f: ScreenFacts): ScreenDecision {
  const s = f.settings;
  if (s.paused) return { accepted: false, reason: 'paused', detail: `intake is paused${s.pausedReason ? ` (${s.pausedReason})` : ''}` };
  if (f.suppression) {
    return { accepted: false, reason: 'suppressed', detail: `matches suppression ${f.suppression.pattern}${f.suppression.reason ? ` (${f.suppression.reason})` : ''}` };
  }
  if (f.lastContactAt) {
    return { accepted: false, reason: 'recontact_window', detail: `already contacted ${f.lastContactAt}; the re-contact window is ${s.recontactWindowDays} days` };
  }
  if (f.today.domain >= s.domainDailyCap) {
    return { accepted: false, reason: 'domain_daily_cap', detail: `${f.today.domain} intakes for ${lead.domain} today; the cap is ${s.domainDailyCap}` };
  }
  if (f.today.sender >= s.senderDailyCap) {
    return { accepted: false, reason: 'sender_daily_cap', detail: `${f.today.sender} intakes for ${sender} today; the cap is ${s.senderDailyCap}` };
  }
  return { accepted: true };
}

/** What an intake started without them (e.g. by a harvest, or `temporal workflow start`) uses: the configuration's. */
export interface IntakeDefaults {
  sender: string;
  mode: SendMode;
  approvalTimeoutMs: number;
}

const text = (value: unknown, max: number): string | undefined => {
  if (typeof value !== 'string') return undefined;
  const trimmed = withoutNul(value).replace(/\s+/g, ' ').trim();
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
export function cleanLead(lead: LeadInput, email: string, domain: string): ScreenedLead {
  const notes = typeof lead.notes === 'string' ? withoutNul(lead.notes).trim().slice(0, 4000) : undefined;
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
