import { draftMessageId } from './prospect.js';
import { checkGuards, withOptOut } from './email-guards.js';

/**
 * A draft version as Prospector composes it, and what a person's edit makes
 * of it. Pure, so the API (to sign what an operator approves), the
 * authorisation step (to check that signature) and the Gmail step (to write
 * the new version) all derive the same next version from the same edit.
 */

export interface DraftContent {
  to: { address: string; name?: string };
  from: { address: string; name?: string };
  subject: string;
  body: string;
  messageId: string;
  intakeKey: string;
  version: number;
  reply?: { threadId: string; inReplyTo: string; references: string[] };
}

export interface DraftEdit {
  subject?: string;
  body?: string;
}

export type EditResult = { ok: true; draft: DraftContent } | { ok: false; problems: string[] };

/** Whether an edit names anything to change. */
export function editsSomething(edit: DraftEdit): boolean {
  return edit.subject !== undefined || edit.body !== undefined;
}

/** The next version of `base` with the edit applied: our opt-out line kept, the guards checked. */
export function editDraft(base: DraftContent, edit: DraftEdit): EditResult {
  const subject = (edit.subject ?? base.subject).trim();
  const body = withOptOut(edit.body ?? base.body);
  const problems = checkGuards({ subject, body });
  if (problems.length) return { ok: false, problems };
  const version = base.version + 1;
  return { ok: true, draft: { ...base, subject, body, version, messageId: draftMessageId(base.intakeKey, version, base.from.address) } };
}
