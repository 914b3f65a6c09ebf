import type { Fact } from './grounding.js';

/**
 * The one place the intake's non-CRM evidence is made: what was said in the
 * Gmail thread with the prospect, and what the sender says about itself. Pure,
 * so workflow code builds these from activity results the same way on replay.
 * (CRM facts are made where HubSpot is read: activities/intake/crm.ts.)
 */

/** What the writer context carries of one Gmail message (activities/intake/gmail.ts trims and cuts it). */
export interface ThreadMessageText {
  from: string;
  at: string;
  text: string;
}

/** The longest product description an operator may set (intake settings, `sender_pitch`). */
export const SENDER_PITCH_MAX = 1000;

/**
 * The latest thread messages, oldest first, as facts `thread.1`, `thread.2`, …
 * in the order given. An empty message says nothing and makes no fact, but
 * keeps its number, so an id names the same message wherever it is shown.
 */
export function threadFacts(messages: readonly ThreadMessageText[] | undefined): Fact[] {
  const facts: Fact[] = [];
  (messages ?? []).forEach((m, i) => {
    const text = m.text.trim();
    if (text) facts.push({ id: `thread.${i + 1}`, text, source: 'gmail:thread' });
  });
  return facts;
}

/**
 * What the sender says about itself: its company name and, when the operator
 * set one, its product description. The only ground for claims about what we
 * sell.
 */
export function senderFacts(sender: { company?: string; pitch?: string | null }): Fact[] {
  const facts: Fact[] = [];
  const company = sender.company?.trim();
  if (company) facts.push({ id: 'sender.company', text: `The sender works at ${company}.`, source: 'sender' });
  const pitch = sender.pitch?.trim().slice(0, SENDER_PITCH_MAX);
  if (pitch) facts.push({ id: 'sender.product', text: pitch, source: 'sender' });
  return facts;
}
