import { createHash } from 'node:crypto';
import PostalMime, { type Address } from 'postal-mime';
import type { DraftContent } from './draft.js';

/**
 * What an approval binds: exactly what an email will carry to its reader.
 * Sender, recipients, subject, plain-text body and the thread headers, in one
 * canonical form whether it comes from the draft Prospector composed or from
 * the MIME Gmail holds, so "approved" and "about to be sent" compare by hash.
 *
 * Left out on purpose: display names (they do not change who receives it),
 * the Message-ID (a version's own key, not content) and Date.
 */

export interface OutgoingContent {
  from: string;
  to: string[];
  cc: string[];
  bcc: string[];
  subject: string;
  body: string;
  inReplyTo: string | null;
  references: string[];
}

type Field = keyof OutgoingContent;
const FIELDS: Field[] = ['from', 'to', 'cc', 'bcc', 'subject', 'body', 'inReplyTo', 'references'];

/** Line ends and trailing whitespace are transport, not content. */
const normaliseBody = (text: string) => text.replace(/\r\n?/g, '\n').replace(/\s+$/, '');
const addresses = (list: string[]) => [...new Set(list.map((a) => a.trim().toLowerCase()).filter(Boolean))].sort();
const messageIds = (text: string | null | undefined) => (text ?? '').match(/<[^<>\s]+>/g) ?? [];

export function contentOfDraft(d: DraftContent): OutgoingContent {
  return {
    from: d.from.address.trim().toLowerCase(),
    to: addresses([d.to.address]),
    cc: [],
    bcc: [],
    subject: d.subject,
    body: normaliseBody(d.body),
    inReplyTo: d.reply?.inReplyTo ?? null,
    references: d.reply ? d.reply.references.flatMap((r) => messageIds(r)) : [],
  };
}

function mailboxes(list: Address[] | Address | undefined): string[] {
  const all = Array.isArray(list) ? list : list ? [list] : [];
  return all.flatMap((a) => ('group' in a && a.group ? a.group.map((m) => m.address) : [(a as { address?: string }).address ?? '']));
}

/** The content of a raw RFC 822 message (a Gmail draft read with format=raw). */
export async function contentOfMime(raw: Buffer | string): Promise<OutgoingContent> {
  const mail = await PostalMime.parse(raw);
  return {
    from: mailboxes(mail.from)[0]?.trim().toLowerCase() ?? '',
    to: addresses(mailboxes(mail.to)),
    cc: addresses(mailboxes(mail.cc)),
    bcc: addresses(mailboxes(mail.bcc)),
    subject: mail.subject ?? '',
    body: normaliseBody(mail.text ?? ''),
    inReplyTo: messageIds(mail.inReplyTo)[0] ?? null,
    references: messageIds(mail.references),
  };
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** One hash over every field, in a fixed order. */
export function contentHash(c: OutgoingContent): string {
  return sha256(JSON.stringify(FIELDS.map((f) => [f, c[f]])));
}

/** A short hash per field, kept beside an approval so a later mismatch can be named. */
export function fieldHashes(c: OutgoingContent): Record<Field, string> {
  return Object.fromEntries(FIELDS.map((f) => [f, sha256(JSON.stringify(c[f])).slice(0, 16)])) as Record<Field, string>;
}

const FIELD_NAMES: Record<Field, string> = {
  from: 'sender',
  to: 'recipients',
  cc: 'Cc recipients',
  bcc: 'Bcc recipients',
  subject: 'subject',
  body: 'body',
  inReplyTo: 'In-Reply-To header',
  references: 'References header',
};

/** Which parts differ, in words ("the body and the recipients"), from field hashes. */
export function describeDifference(approved: Partial<Record<Field, string>>, actual: Record<Field, string>): string {
  const changed = FIELDS.filter((f) => approved[f] !== undefined && approved[f] !== actual[f]).map((f) => FIELD_NAMES[f]);
  if (!changed.length) return 'its content';
  return changed.length === 1 ? `the ${changed[0]}` : `the ${changed.slice(0, -1).join(', ')} and the ${changed.at(-1)}`;
}

/** Hash of the content a draft version carries. */
export function draftHash(d: DraftContent): string {
  return contentHash(contentOfDraft(d));
}
