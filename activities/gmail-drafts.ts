import { createHash } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import MailComposer from 'nodemailer/lib/mail-composer';
import { inTransaction, type Pool } from '../lib/db.js';
import type { Gmail } from './google.js';
import { call, providerFailure, statusOf } from './intake-errors.js';
import { findEffect, recordEffect } from './prospects-store.js';

/**
 * Gmail side of the intake: the conversation so far (step 3), the one draft
 * per intake (step 6, in-thread when replying), its edits, and the only code
 * in Prospector that sends an email (`sendApprovedDraft`).
 *
 * Each draft version carries a Message-ID made from the intake key and the
 * version. That is the business key: a retried create or update first asks
 * Gmail for `rfc822msgid:<id>` and finds what an earlier attempt (or a worker
 * that died before recording it) already made.
 */

export interface ThreadMessage {
  from: string;
  to: string;
  at: string;
  messageId?: string;
  subject: string;
  /** Plain text, trimmed; data for the writer. */
  text: string;
  fromProspect: boolean;
}

export interface EmailContext {
  threadCount: number;
  latest?: { threadId: string; subject: string; lastAt: string; messages: ThreadMessage[] };
  /** Set when the latest thread is active and recent: the draft becomes a reply in it. */
  reply?: { threadId: string; subject: string; inReplyTo: string; references: string[] };
}

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

export interface DraftRef {
  draftId: string;
  gmailMessageId: string;
  threadId: string;
  created: boolean;
}

/** A thread counts as active when the prospect wrote in it and it moved within this window. */
export const ACTIVE_THREAD_DAYS = 30;

type Header = { name?: string | null; value?: string | null };
type Part = { mimeType?: string | null; body?: { data?: string | null } | null; parts?: Part[] | null; headers?: Header[] | null };

const header = (headers: Header[] | null | undefined, name: string) => headers?.find((h) => h.name?.toLowerCase() === name.toLowerCase())?.value ?? undefined;

function plainText(part: Part | undefined): string {
  if (!part) return '';
  if (part.mimeType === 'text/plain' && part.body?.data) return Buffer.from(part.body.data, 'base64url').toString('utf8');
  for (const child of part.parts ?? []) {
    const text = plainText(child);
    if (text) return text;
  }
  if (part.mimeType === 'text/html' && part.body?.data) {
    return Buffer.from(part.body.data, 'base64url').toString('utf8').replace(/<[^>]+>/g, ' ');
  }
  return '';
}

/** Quoted replies and signatures are noise for the writer; keep the new text. */
function newText(text: string): string {
  const lines: string[] = [];
  for (const line of text.replace(/\r/g, '').split('\n')) {
    if (/^On .+wrote:$/.test(line.trim()) || line.startsWith('>')) break;
    lines.push(line);
  }
  return lines.join('\n').replace(/\n{3,}/g, '\n\n').trim().slice(0, 1200);
}

export const stripRe = (subject: string) => subject.replace(/^(\s*(re|fwd?|aw)\s*:\s*)+/i, '').trim();

export function contentHash(subject: string, body: string): string {
  return createHash('sha256').update(`${subject}\n\n${body}`).digest('hex');
}

export async function composeRaw(d: DraftContent): Promise<string> {
  const mail = new MailComposer({
    from: d.from.name ? { name: d.from.name, address: d.from.address } : d.from.address,
    to: d.to.name ? { name: d.to.name, address: d.to.address } : d.to.address,
    subject: d.subject,
    text: d.body,
    messageId: d.messageId,
    ...(d.reply ? { inReplyTo: d.reply.inReplyTo, references: d.reply.references } : {}),
    headers: { 'X-Prospector-Intake': d.intakeKey, 'X-Prospector-Draft-Version': String(d.version) },
  });
  const raw = await mail.compile().build();
  return raw.toString('base64url');
}

export function createGmailDrafts(gmail: Gmail, pool: Pool) {
  async function findDraftByMessageId(messageId: string): Promise<DraftRef | undefined> {
    const listed = await call('google', 'drafts.list', () => gmail.users.drafts.list({ userId: 'me', q: `rfc822msgid:${messageId}`, maxResults: 1 }));
    const d = listed.data.drafts?.[0];
    if (!d?.id) return undefined;
    return { draftId: d.id, gmailMessageId: d.message?.id ?? '', threadId: d.message?.threadId ?? '', created: false };
  }

  async function sentByMessageId(messageId: string): Promise<string | undefined> {
    const listed = await call('google', 'messages.list', () => gmail.users.messages.list({ userId: 'me', q: `in:sent rfc822msgid:${messageId}`, maxResults: 1 }));
    return listed.data.messages?.[0]?.id ?? undefined;
  }

  return {
    /** Step 3: the latest threads with the prospect; an active one turns the email into a reply. */
    async gatherContext(email: string): Promise<EmailContext> {
      const listed = await call('google', 'threads.list', () => gmail.users.threads.list({ userId: 'me', q: `{from:${email} to:${email}} -in:drafts`, maxResults: 5 }));
      const threads = listed.data.threads ?? [];
      if (!threads[0]?.id) return { threadCount: 0 };
      const full = await call('google', 'threads.get', () => gmail.users.threads.get({ userId: 'me', id: threads[0]!.id!, format: 'full' }));
      const all = (full.data.messages ?? []).map((m): ThreadMessage => {
        const from = header(m.payload?.headers, 'From') ?? '';
        return {
          from,
          to: header(m.payload?.headers, 'To') ?? '',
          at: new Date(Number(m.internalDate ?? 0)).toISOString(),
          messageId: header(m.payload?.headers, 'Message-ID')?.trim(),
          subject: header(m.payload?.headers, 'Subject') ?? '',
          text: newText(plainText(m.payload as Part)),
          fromProspect: from.toLowerCase().includes(email),
        };
      });
      // Drafts in the thread are ours, not conversation.
      const messages = all.filter((_, i) => !(full.data.messages?.[i]?.labelIds ?? []).includes('DRAFT'));
      if (!messages.length) return { threadCount: threads.length };
      const last = messages.at(-1)!;
      const latest = { threadId: threads[0].id, subject: stripRe(messages[0]!.subject), lastAt: last.at, messages: messages.slice(-3) };
      const recent = Date.now() - Date.parse(last.at) < ACTIVE_THREAD_DAYS * 86_400_000;
      const ids = messages.map((m) => m.messageId).filter((id): id is string => Boolean(id));
      const reply =
        recent && messages.some((m) => m.fromProspect) && last.messageId
          ? { threadId: latest.threadId, subject: latest.subject, inReplyTo: last.messageId, references: ids.slice(-10) }
          : undefined;
      return { threadCount: threads.length, latest, reply };
    },

    /** Step 6: the intake's one draft (version 1). */
    async ensureDraft(d: DraftContent): Promise<DraftRef> {
      const key = `${d.intakeKey}:draft`;
      const known = await findEffect(pool, key);
      if (known) return { draftId: known.external_id, gmailMessageId: String(known.data.gmailMessageId ?? ''), threadId: String(known.data.threadId ?? ''), created: false };
      const found = await findDraftByMessageId(d.messageId);
      const ref =
        found ??
        (await call('google', 'drafts.create', async () => {
          const raw = await composeRaw(d);
          const res = await gmail.users.drafts.create({ userId: 'me', requestBody: { message: { raw, ...(d.reply ? { threadId: d.reply.threadId } : {}) } } });
          return { draftId: res.data.id!, gmailMessageId: res.data.message?.id ?? '', threadId: res.data.message?.threadId ?? '', created: true };
        }));
      await recordEffect(pool, d.intakeKey, key, 'draft', ref.draftId, { gmailMessageId: ref.gmailMessageId, threadId: ref.threadId, messageId: d.messageId });
      return ref;
    },

    /** An edit: the same draft gets the new version's content and Message-ID. */
    async reviseDraft(draftId: string, d: DraftContent): Promise<DraftRef> {
      const found = await findDraftByMessageId(d.messageId);
      if (found) return found;
      try {
        const raw = await composeRaw(d);
        const res = await gmail.users.drafts.update({ userId: 'me', id: draftId, requestBody: { message: { raw, ...(d.reply ? { threadId: d.reply.threadId } : {}) } } });
        return { draftId, gmailMessageId: res.data.message?.id ?? '', threadId: res.data.message?.threadId ?? '', created: true };
      } catch (err) {
        if (statusOf('google', err) === 404) throw ApplicationFailure.nonRetryable('The Gmail draft no longer exists (deleted in Gmail?)', 'DraftMissing');
        throw providerFailure('google', 'drafts.update', err);
      }
    },

    /** Removes the draft of a rejected or expired intake; already gone is fine. */
    async deleteDraft(draftId: string): Promise<boolean> {
      try {
        await gmail.users.drafts.delete({ userId: 'me', id: draftId });
        return true;
      } catch (err) {
        if (statusOf('google', err) === 404) return false;
        throw providerFailure('google', 'drafts.delete', err);
      }
    },

    /**
     * The one send path. Sends draft `version` only if PostgreSQL holds the
     * approval of exactly that version, no other version of this intake was
     * ever sent, Gmail has not sent it already, and the draft in Gmail still
     * is that version.
     */
    async sendApprovedDraft(s: { intakeKey: string; version: number; draftId: string; messageId: string }): Promise<{ gmailMessageId: string; alreadySent: boolean }> {
      const claim = await claimSend(pool, s);
      if (claim.state === 'sent') return { gmailMessageId: claim.gmailMessageId ?? '', alreadySent: true };

      const sentId = await sentByMessageId(s.messageId);
      if (sentId) {
        await markSent(pool, s.intakeKey, sentId);
        return { gmailMessageId: sentId, alreadySent: true };
      }
      let current: string | undefined;
      try {
        const draft = await gmail.users.drafts.get({ userId: 'me', id: s.draftId, format: 'metadata' });
        current = header(draft.data.message?.payload?.headers, 'Message-ID')?.trim();
      } catch (err) {
        if (statusOf('google', err) === 404) throw ApplicationFailure.nonRetryable('The approved draft is no longer in Gmail and was not sent by Prospector', 'DraftMissing');
        throw providerFailure('google', 'drafts.get', err);
      }
      if (current?.toLowerCase() !== s.messageId.toLowerCase()) {
        throw ApplicationFailure.nonRetryable(`The Gmail draft changed after approval (it holds ${current ?? 'no Message-ID'}); not sending`, 'DraftChanged');
      }
      const sent = await call('google', 'drafts.send', () => gmail.users.drafts.send({ userId: 'me', requestBody: { id: s.draftId } }));
      await markSent(pool, s.intakeKey, sent.data.id ?? '');
      return { gmailMessageId: sent.data.id ?? '', alreadySent: false };
    },
  };
}

export type GmailDrafts = ReturnType<typeof createGmailDrafts>;

/** Checks the recorded approval and claims the intake's single send for this version. */
async function claimSend(pool: Pool, s: { intakeKey: string; version: number; messageId: string }): Promise<{ state: 'sending' | 'sent'; gmailMessageId?: string }> {
  return inTransaction(pool, async (db) => {
    const approval = await db.query('SELECT message_id FROM intake_approvals WHERE intake_key = $1 AND version = $2', [s.intakeKey, s.version]);
    if (!approval.rows[0]) throw ApplicationFailure.nonRetryable(`No recorded approval for draft version ${s.version}; not sending`, 'NotApproved');
    if (approval.rows[0].message_id !== s.messageId) throw ApplicationFailure.nonRetryable('The approval was for other content; not sending', 'NotApproved');
    await db.query(
      `INSERT INTO intake_sends (intake_key, version, message_id, state) VALUES ($1, $2, $3, 'sending') ON CONFLICT (intake_key) DO NOTHING`,
      [s.intakeKey, s.version, s.messageId],
    );
    const { rows } = await db.query('SELECT version, state, gmail_message_id FROM intake_sends WHERE intake_key = $1 FOR UPDATE', [s.intakeKey]);
    if (rows[0].version !== s.version) throw ApplicationFailure.nonRetryable(`Version ${rows[0].version} of this intake was already sent or is being sent`, 'AlreadySent');
    return { state: rows[0].state, gmailMessageId: rows[0].gmail_message_id ?? undefined };
  });
}

async function markSent(pool: Pool, intakeKey: string, gmailMessageId: string): Promise<void> {
  await pool.query(`UPDATE intake_sends SET state = 'sent', gmail_message_id = $2, sent_at = COALESCE(sent_at, now()) WHERE intake_key = $1`, [intakeKey, gmailMessageId]);
}
