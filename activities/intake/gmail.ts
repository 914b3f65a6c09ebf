import { randomUUID } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import MailComposer from 'nodemailer/lib/mail-composer';
import { contentHash, contentOfMime, describeDifference, draftHash, fieldHashes } from '../../lib/domain/approval-content.js';
import type { DraftContent } from '../../lib/domain/draft.js';
import type { Pool } from '../../lib/store/db.js';
import { claimSend, markNotSent, markSending, markSent, releaseClaim, renewLease, type ClaimResult } from '../../lib/store/sends.js';
import type { Gmail } from '../providers/google.js';
import { activitySignal, call, providerFailure, statusOf } from '../providers/failures.js';
import { findEffect, recordEffect } from '../../lib/store/effects.js';

/**
 * Gmail side of the intake: the conversation so far (step 3), the one draft
 * per intake (step 6, in-thread when replying), its edits, and the only code
 * in Prospector that sends an email (`sendApprovedDraft`).
 *
 * Each draft version carries a Message-ID made from the intake key and the
 * version. That is the business key: a retried create or update first asks
 * Gmail for `rfc822msgid:<id>` and finds what an earlier attempt (or a worker
 * that died before recording it) already made. What it finds is compared by
 * content hash with what the workflow means that version to be, and
 * rewritten when it differs (a reset run writes other text under the same
 * version), so the draft a person approves is the draft in Gmail.
 *
 * Every Gmail call carries the activity's cancellation signal: a cancelled or
 * timed-out step stops talking to Gmail instead of finishing in the background.
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

export type { DraftContent } from '../../lib/domain/draft.js';

export interface DraftRef {
  draftId: string;
  gmailMessageId: string;
  threadId: string;
  created: boolean;
  /** An existing draft held other content and was rewritten to this version's. */
  rewritten?: boolean;
  /** Hash of the content the Gmail draft now holds (lib/domain/approval-content.ts). */
  contentHash: string;
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

/** What a send attempt found or did. */
export interface SendOutcome {
  gmailMessageId: string;
  /** Found already sent (by an earlier attempt whose answer was lost, or by a person in Gmail). */
  alreadySent: boolean;
  /** False when Gmail sent it but PostgreSQL could not record it: the workflow records it later. */
  recorded: boolean;
}

export interface SendRequest {
  intakeKey: string;
  version: number;
  draftId: string;
  messageId: string;
  /** Hash of the approved content: only a draft holding exactly this is sent. */
  contentHash: string;
}

export interface SendOptions {
  /** How long an answer lost after drafts.send is looked for in Gmail before a person is asked. */
  lookupPatienceMs: number;
  leaseMs?: number;
  /** Who this attempt is; defaults to the activity attempt. */
  holder?: string;
  signal?: AbortSignal;
}

const DEFAULT_LEASE_MS = 20_000;

function attemptHolder(): string {
  try {
    const info = Context.current().info;
    return `${info.workflowExecution?.runId ?? info.workflowType}:${info.activityId}:${info.attempt}`;
  } catch {
    return `direct:${randomUUID()}`;
  }
}

export function createGmailDrafts(gmail: Gmail, pool: Pool) {
  const opts = () => ({ signal: activitySignal() });

  async function findDraftByMessageId(messageId: string): Promise<{ draftId: string; gmailMessageId: string; threadId: string } | undefined> {
    const listed = await call('google', 'drafts.list', () => gmail.users.drafts.list({ userId: 'me', q: `rfc822msgid:${messageId}`, maxResults: 1 }, opts()));
    const d = listed.data.drafts?.[0];
    if (!d?.id) return undefined;
    return { draftId: d.id, gmailMessageId: d.message?.id ?? '', threadId: d.message?.threadId ?? '' };
  }

  /** The draft as Gmail holds it now, with the hash of its content; undefined when it no longer exists. */
  async function readDraft(draftId: string, signal?: AbortSignal) {
    try {
      const res = await gmail.users.drafts.get({ userId: 'me', id: draftId, format: 'raw' }, { signal: signal ?? activitySignal() });
      const content = await contentOfMime(Buffer.from(res.data.message?.raw ?? '', 'base64url'));
      return { gmailMessageId: res.data.message?.id ?? '', threadId: res.data.message?.threadId ?? '', content, hash: contentHash(content) };
    } catch (err) {
      if (statusOf('google', err) === 404) return undefined;
      throw providerFailure('google', 'drafts.get', err);
    }
  }

  async function writeDraft(d: DraftContent, draftId?: string): Promise<{ draftId: string; gmailMessageId: string; threadId: string }> {
    const raw = await composeRaw(d);
    const requestBody = { message: { raw, ...(d.reply ? { threadId: d.reply.threadId } : {}) } };
    if (!draftId) {
      const res = await call('google', 'drafts.create', () => gmail.users.drafts.create({ userId: 'me', requestBody }, opts()));
      return { draftId: res.data.id!, gmailMessageId: res.data.message?.id ?? '', threadId: res.data.message?.threadId ?? '' };
    }
    try {
      const res = await gmail.users.drafts.update({ userId: 'me', id: draftId, requestBody }, opts());
      return { draftId, gmailMessageId: res.data.message?.id ?? '', threadId: res.data.message?.threadId ?? '' };
    } catch (err) {
      if (statusOf('google', err) === 404) throw ApplicationFailure.nonRetryable('The Gmail draft no longer exists (deleted in Gmail?)', 'DraftMissing');
      throw providerFailure('google', 'drafts.update', err);
    }
  }

  /** Makes the Gmail draft `draftId` hold exactly `d`, rewriting it when it holds anything else. */
  async function settleDraft(draftId: string, d: DraftContent): Promise<DraftRef | undefined> {
    const want = draftHash(d);
    const held = await readDraft(draftId);
    if (!held) return undefined;
    if (held.hash === want) return { draftId, gmailMessageId: held.gmailMessageId, threadId: held.threadId, created: false, contentHash: want };
    const written = await writeDraft(d, draftId);
    return { ...written, created: false, rewritten: true, contentHash: want };
  }

  /**
   * Whether a draft went out, from what Gmail can say without its lagging
   * search index first: the draft's message itself (SENT or still DRAFT), then
   * the draft (a sent draft no longer exists), and only then a search of Sent.
   */
  async function findSent(
    messageId: string,
    known: { draftMessageId?: string | null; draftId?: string },
    signal?: AbortSignal,
  ): Promise<{ state: 'sent'; id: string } | { state: 'draft' } | { state: 'not_found' }> {
    if (known.draftMessageId) {
      try {
        const m = await gmail.users.messages.get({ userId: 'me', id: known.draftMessageId, format: 'minimal' }, { signal });
        const labels = m.data.labelIds ?? [];
        if (labels.includes('SENT')) return { state: 'sent', id: m.data.id ?? known.draftMessageId };
        if (labels.includes('DRAFT')) return { state: 'draft' };
      } catch (err) {
        if (statusOf('google', err) !== 404) throw providerFailure('google', 'messages.get', err);
      }
    }
    if (known.draftId) {
      try {
        await gmail.users.drafts.get({ userId: 'me', id: known.draftId, format: 'minimal' }, { signal });
        return { state: 'draft' };
      } catch (err) {
        if (statusOf('google', err) !== 404) throw providerFailure('google', 'drafts.get', err);
      }
    }
    const listed = await call('google', 'messages.list', () => gmail.users.messages.list({ userId: 'me', q: `in:sent rfc822msgid:${messageId}`, maxResults: 1 }, { signal }));
    const id = listed.data.messages?.[0]?.id;
    return id ? { state: 'sent', id } : { state: 'not_found' };
  }

  return {
    /** Step 3: the latest threads with the prospect; an active one turns the email into a reply. */
    async gatherContext(email: string): Promise<EmailContext> {
      const listed = await call('google', 'threads.list', () => gmail.users.threads.list({ userId: 'me', q: `{from:${email} to:${email}} -in:drafts`, maxResults: 5 }, opts()));
      const threads = listed.data.threads ?? [];
      if (!threads[0]?.id) return { threadCount: 0 };
      const full = await call('google', 'threads.get', () => gmail.users.threads.get({ userId: 'me', id: threads[0]!.id!, format: 'full' }, opts()));
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

    /** Step 6: the intake's one draft (version 1), holding exactly `d`. */
    async ensureDraft(d: DraftContent): Promise<DraftRef> {
      const key = `${d.intakeKey}:draft`;
      const known = await findEffect(pool, key);
      const existing = known?.external_id ?? (await findDraftByMessageId(d.messageId))?.draftId;
      const settled = existing ? await settleDraft(existing, d) : undefined;
      const ref = settled ?? { ...(await writeDraft(d)), created: true, contentHash: draftHash(d) };
      // A draft deleted in Gmail (a rejected intake, then reset) is replaced by the new one.
      await recordEffect(pool, d.intakeKey, key, 'draft', ref.draftId, { gmailMessageId: ref.gmailMessageId, threadId: ref.threadId, messageId: d.messageId }, { replace: Boolean(known && !settled) });
      return ref;
    },

    /** An edit: the same draft gets the new version's content and Message-ID. */
    async reviseDraft(draftId: string, d: DraftContent): Promise<DraftRef> {
      const found = await findDraftByMessageId(d.messageId);
      const settled = await settleDraft(found?.draftId ?? draftId, d);
      if (!settled) throw ApplicationFailure.nonRetryable('The Gmail draft no longer exists (deleted in Gmail?)', 'DraftMissing');
      return settled;
    },

    /** What became of a send whose answer was lost (see findSent). */
    async sendOutcome(messageId: string, known: { draftMessageId?: string | null; draftId?: string }) {
      return findSent(messageId, known, activitySignal());
    },

    /** Removes the draft of a rejected or expired intake; already gone is fine. */
    async deleteDraft(draftId: string): Promise<boolean> {
      try {
        await gmail.users.drafts.delete({ userId: 'me', id: draftId }, opts());
        return true;
      } catch (err) {
        if (statusOf('google', err) === 404) return false;
        throw providerFailure('google', 'drafts.delete', err);
      }
    },

    /**
     * The one send path. Sends only under an exclusive claim on the intake's
     * single send (lib/store/sends.ts), only a draft whose content hashes to
     * the approved content, and settles a send whose answer was lost against
     * Gmail before anything else: found sent → sent; still a draft → not
     * sent; not to be found → looked for again until `lookupPatienceMs`,
     * then a person is asked, saying that it may have been sent.
     */
    async sendApprovedDraft(s: SendRequest, o: SendOptions): Promise<SendOutcome> {
      const holder = o.holder ?? attemptHolder();
      const leaseMs = o.leaseMs ?? DEFAULT_LEASE_MS;
      const lease = keepLease(pool, s.intakeKey, holder, leaseMs);
      const outer = o.signal ?? activitySignal();
      const signal = outer ? AbortSignal.any([lease.signal, outer]) : lease.signal;
      try {
        let claim = await claimSend(pool, { ...s, holder, leaseMs });
        if (claim.kind === 'unknown') claim = await settleUnknown(claim);
        switch (claim.kind) {
          case 'not_approved':
            throw ApplicationFailure.nonRetryable(`No approval of draft version ${s.version} with this content is recorded; not sending`, 'NotApproved');
          case 'other_sent':
            throw ApplicationFailure.nonRetryable(`Draft version ${claim.version} of this intake, with other content, was already sent${claim.sentAt ? ` at ${claim.sentAt}` : ''}; not sending another`, 'AlreadySent');
          case 'busy':
            throw ApplicationFailure.create({ message: `Another attempt holds this intake's send until ${claim.leaseUntil}`, type: 'SendBusy', nextRetryDelay: Math.max(1_000, Date.parse(claim.leaseUntil) - Date.now()) });
          case 'sent':
            return { gmailMessageId: claim.gmailMessageId, alreadySent: true, recorded: true };
          case 'claimed':
            return await sendClaimed(claim);
        }
        throw new Error('unreachable');
      } finally {
        lease.stop();
        await releaseClaim(pool, s.intakeKey, holder).catch(() => undefined);
      }

      /** A send row left in `sending`: what did Gmail do with it? */
      async function settleUnknown(c: Extract<ClaimResult, { kind: 'unknown' }>): Promise<ClaimResult> {
        const found = await findSent(c.messageId, { draftMessageId: c.draftMessageId, draftId: s.draftId }, signal);
        if (found.state === 'sent') {
          await markSent(pool, s.intakeKey, found.id);
          return c.contentHash === s.contentHash ? { kind: 'sent', gmailMessageId: found.id } : { kind: 'other_sent', version: c.version, sentAt: null };
        }
        if (found.state === 'draft') {
          // Gmail still holds it as a draft: that send never happened; this attempt may send.
          await markNotSent(pool, s.intakeKey, holder, s);
          return { kind: 'claimed', approver: c.approver, fieldHashes: c.fieldHashes };
        }
        const waited = Date.now() - Date.parse(c.calledAt);
        const message = `Gmail was asked to send this draft at ${c.calledAt} and the answer was lost; it is not in Sent ${waited < o.lookupPatienceMs ? 'yet' : `after ${Math.round(waited / 60_000)} minutes`}. It may have been sent: check Sent in Gmail before sending it again`;
        if (waited < o.lookupPatienceMs) {
          throw ApplicationFailure.create({ message, type: 'SendOutcomePending', nextRetryDelay: Math.min(30_000, Math.max(2_000, o.lookupPatienceMs / 20)) });
        }
        throw ApplicationFailure.nonRetryable(message, 'SendOutcomeUnknown');
      }

      async function sendClaimed(c: Extract<ClaimResult, { kind: 'claimed' }>): Promise<SendOutcome> {
        const held = await readDraft(s.draftId, signal);
        if (!held) {
          // Not ours to have sent (no attempt reached drafts.send), but a person may have sent it from Gmail.
          const found = await findSent(s.messageId, {}, signal);
          if (found.state === 'sent') return recordSent(found.id, true);
          throw ApplicationFailure.nonRetryable('The approved draft is no longer in Gmail and is not in Sent: Prospector did not send it (deleted in Gmail?)', 'DraftMissing');
        }
        if (held.hash !== s.contentHash) {
          const what = describeDifference(c.fieldHashes, fieldHashes(held.content));
          throw ApplicationFailure.nonRetryable(`The Gmail draft changed after ${c.approver} approved version ${s.version}: ${what} differs from what was approved; not sending`, 'DraftChanged');
        }
        if (!(await markSending(pool, s.intakeKey, holder, held.gmailMessageId))) {
          throw ApplicationFailure.create({ message: 'This attempt lost its claim on the send before calling Gmail', type: 'SendBusy', nextRetryDelay: 1_000 });
        }
        let sentId: string;
        try {
          const res = await gmail.users.drafts.send({ userId: 'me', requestBody: { id: s.draftId } }, { signal });
          sentId = res.data.id ?? held.gmailMessageId;
        } catch (err) {
          const status = statusOf('google', err);
          if (status !== undefined && status >= 400 && status < 500 && ![404, 408, 409, 429].includes(status)) {
            // Gmail refused the request itself: nothing went out.
            await markNotSent(pool, s.intakeKey, holder);
            throw ApplicationFailure.nonRetryable(`Gmail refused to send the approved draft: ${providerFailure('google', 'drafts.send', err).message}`, 'SendRefused');
          }
          // No answer, or one that does not say: the next attempt settles it against Gmail.
          throw providerFailure('google', 'drafts.send', err);
        }
        return recordSent(sentId, false);
      }

      async function recordSent(gmailMessageId: string, alreadySent: boolean): Promise<SendOutcome> {
        try {
          await markSent(pool, s.intakeKey, gmailMessageId);
          return { gmailMessageId, alreadySent, recorded: true };
        } catch {
          // Sent, and PostgreSQL is away: say so; the workflow records it once the database answers.
          return { gmailMessageId, alreadySent, recorded: false };
        }
      }
    },
  };
}

export type GmailDrafts = ReturnType<typeof createGmailDrafts>;

/** Renews the claim's lease while the attempt runs; its signal aborts Gmail calls once the claim is lost. */
function keepLease(pool: Pool, intakeKey: string, holder: string, leaseMs: number) {
  const controller = new AbortController();
  let until = Date.now() + leaseMs;
  const check = setInterval(() => {
    renewLease(pool, intakeKey, holder, leaseMs).then(
      (held) => (held ? (until = Date.now() + leaseMs) : undefined),
      () => undefined,
    );
    // Unrenewed (PostgreSQL away) until close to its end: stop before another attempt may take over.
    if (Date.now() > until - leaseMs / 6) controller.abort(new Error('the send claim lease is running out'));
  }, Math.max(250, leaseMs / 4));
  return { signal: controller.signal, stop: () => clearInterval(check) };
}
