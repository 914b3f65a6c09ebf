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

export interface DraftView {
  version: number;
  subject: string;
  body: string;
  draftId?: string;
  /** RFC 822 Message-ID of this version: the idempotency key of the draft. */
  messageId: string;
  threadId?: string;
  replying: boolean;
  factsUsed: string[];
  editedBy?: string;
  /** Who receives it and from which mailbox, and the thread headers: with subject and body, what an approval binds. */
  to: { address: string; name?: string };
  from: { address: string; name?: string };
  reply?: { threadId: string; inReplyTo: string; references: string[] };
  /** Hash of exactly that content (lib/domain/approval-content.ts); an approval token carries it. */
  contentHash?: string;
}

/**
 * RFC 822 Message-ID of draft `version` of an intake. Deterministic, so a
 * retried create finds the draft it already made (`rfc822msgid:` search) and
 * the send step can tell which version sits in Gmail.
 */
export function draftMessageId(intakeKey: string, version: number, senderEmail: string): string {
  const domain = senderEmail.split('@')[1] ?? 'prospector.invalid';
  return `<intake-${intakeKey}-v${version}@${domain}>`;
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

/** Where a draft version sits in Gmail once written, and the hash of what it holds there. */
export interface DraftPlace {
  draftId?: string;
  threadId?: string;
  contentHash?: string;
}

/** The draft as the status query and the read model show it: what an approver reviews (and signs). */
export function draftView(d: DraftContent, place: DraftPlace | undefined, factsUsed: string[], editedBy?: string): DraftView {
  return {
    version: d.version,
    subject: d.subject,
    body: d.body,
    draftId: place?.draftId,
    messageId: d.messageId,
    threadId: place?.threadId || d.reply?.threadId,
    replying: Boolean(d.reply),
    factsUsed,
    to: d.to,
    from: d.from,
    ...(d.reply ? { reply: d.reply } : {}),
    ...(place?.contentHash ? { contentHash: place.contentHash } : {}),
    ...(editedBy ? { editedBy } : {}),
  };
}
