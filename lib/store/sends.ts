import type pg from 'pg';
import { inTransaction } from './db.js';
import type { Queryable } from './audit.js';

/**
 * Approvals and the one send of each intake (`intake_approvals`,
 * `intake_sends`): the only module that writes them.
 *
 * An approval row binds an intake, a draft version and the hash of exactly
 * the content approved. A send row can exist only for such an approval (a
 * foreign key), at most one per intake, and moves claimed → sending → sent:
 *
 * - `claimed`: an attempt holds the send; its lease runs while it is alive.
 *   Nobody has asked Gmail to send.
 * - `sending`: set just before Gmail's drafts.send. From here the email may
 *   have gone out whatever fails next; only Gmail can say whether it did.
 * - `sent`: Gmail confirmed it (or it was found in Sent).
 */

export interface ApprovalRecord {
  intakeKey: string;
  version: number;
  workflowId: string;
  runId: string;
  approver: string;
  reason?: string;
  messageId: string;
  contentHash: string;
  fieldHashes: Record<string, string>;
  requestId?: string;
  signed: boolean;
  keyId?: string;
}

export async function recordApproval(db: Queryable, a: ApprovalRecord): Promise<void> {
  await db.query(
    `INSERT INTO intake_approvals (intake_key, version, workflow_id, run_id, approver, reason, message_id, content_hash, request_id, field_hashes, signed, key_id)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (intake_key, version, content_hash) DO NOTHING`,
    [a.intakeKey, a.version, a.workflowId, a.runId, a.approver, a.reason ?? null, a.messageId, a.contentHash, a.requestId ?? null, a.fieldHashes, a.signed, a.keyId ?? null],
  );
}

export interface SendClaim {
  intakeKey: string;
  version: number;
  messageId: string;
  contentHash: string;
  /** This attempt: workflow, run, activity and attempt number. */
  holder: string;
  leaseMs: number;
}

export type ClaimResult =
  | { kind: 'not_approved' }
  | { kind: 'claimed'; approver: string; fieldHashes: Record<string, string> }
  | { kind: 'sent'; gmailMessageId: string }
  | { kind: 'other_sent'; version: number; sentAt: string | null }
  | { kind: 'busy'; leaseUntil: string }
  | { kind: 'unknown'; calledAt: string; draftMessageId: string | null; version: number; contentHash: string; messageId: string; approver: string; fieldHashes: Record<string, string> };

/**
 * Takes the intake's send for this attempt, or says why not. A claim whose
 * lease ran out is taken over; one that reached Gmail (`sending`) comes back
 * as `unknown` (with the lease now ours), to be settled against Gmail first.
 */
export async function claimSend(pool: pg.Pool, c: SendClaim): Promise<ClaimResult> {
  return inTransaction(pool, async (db) => {
    const approval = await db.query('SELECT approver, field_hashes FROM intake_approvals WHERE intake_key = $1 AND version = $2 AND content_hash = $3', [c.intakeKey, c.version, c.contentHash]);
    if (!approval.rows[0]) return { kind: 'not_approved' as const };
    const approved = { approver: approval.rows[0].approver as string, fieldHashes: approval.rows[0].field_hashes as Record<string, string> };
    const lease = `now() + $2 * interval '1 millisecond'`;
    const inserted = await db.query(
      `INSERT INTO intake_sends (intake_key, version, message_id, content_hash, state, holder, lease_until)
       VALUES ($1, $3, $4, $5, 'claimed', $6, ${lease}) ON CONFLICT (intake_key) DO NOTHING RETURNING 1`,
      [c.intakeKey, c.leaseMs, c.version, c.messageId, c.contentHash, c.holder],
    );
    if (inserted.rowCount) return { kind: 'claimed' as const, ...approved };
    const { rows } = await db.query('SELECT *, lease_until > now() AS leased FROM intake_sends WHERE intake_key = $1 FOR UPDATE', [c.intakeKey]);
    const row = rows[0];
    if (row.state === 'sent') {
      return row.content_hash === c.contentHash
        ? { kind: 'sent' as const, gmailMessageId: row.gmail_message_id ?? '' }
        : { kind: 'other_sent' as const, version: row.version, sentAt: row.sent_at ? new Date(row.sent_at).toISOString() : null };
    }
    if (row.holder !== c.holder && row.leased) return { kind: 'busy' as const, leaseUntil: new Date(row.lease_until).toISOString() };
    if (row.state === 'sending') {
      await db.query(`UPDATE intake_sends SET holder = $3, lease_until = ${lease} WHERE intake_key = $1`, [c.intakeKey, c.leaseMs, c.holder]);
      const theirs = await db.query('SELECT approver, field_hashes FROM intake_approvals WHERE intake_key = $1 AND version = $2 AND content_hash = $3', [c.intakeKey, row.version, row.content_hash]);
      return {
        kind: 'unknown' as const,
        calledAt: new Date(row.send_called_at).toISOString(),
        draftMessageId: row.draft_message_id ?? null,
        version: row.version,
        contentHash: row.content_hash,
        messageId: row.message_id,
        approver: theirs.rows[0]?.approver ?? 'unknown',
        fieldHashes: theirs.rows[0]?.field_hashes ?? {},
      };
    }
    await db.query(
      `UPDATE intake_sends SET holder = $3, lease_until = ${lease}, version = $4, message_id = $5, content_hash = $6 WHERE intake_key = $1`,
      [c.intakeKey, c.leaseMs, c.holder, c.version, c.messageId, c.contentHash],
    );
    return { kind: 'claimed' as const, ...approved };
  });
}

/** Keeps the claim alive; false when it is no longer this holder's. */
export async function renewLease(db: Queryable, intakeKey: string, holder: string, leaseMs: number): Promise<boolean> {
  const { rowCount } = await db.query(`UPDATE intake_sends SET lease_until = now() + $3 * interval '1 millisecond' WHERE intake_key = $1 AND holder = $2 AND state <> 'sent'`, [intakeKey, holder, leaseMs]);
  return Boolean(rowCount);
}

/** An attempt is over: its lease ends now, so the next attempt need not wait for it to run out. */
export async function releaseClaim(db: Queryable, intakeKey: string, holder: string): Promise<void> {
  await db.query(`UPDATE intake_sends SET lease_until = now() WHERE intake_key = $1 AND holder = $2 AND state <> 'sent'`, [intakeKey, holder]);
}

/** The last step before Gmail's send: only the live holder may take it. */
export async function markSending(db: Queryable, intakeKey: string, holder: string, draftMessageId: string): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE intake_sends SET state = 'sending', send_called_at = now(), draft_message_id = $3
      WHERE intake_key = $1 AND holder = $2 AND state = 'claimed' AND lease_until > now()`,
    [intakeKey, holder, draftMessageId],
  );
  return Boolean(rowCount);
}

/** Gmail refused the send outright or still holds the draft unsent: back to claimed (nothing went out). */
export async function markNotSent(db: Queryable, intakeKey: string, holder: string, s?: { version: number; messageId: string; contentHash: string }): Promise<void> {
  await db.query(
    `UPDATE intake_sends SET state = 'claimed', send_called_at = NULL, draft_message_id = NULL,
       version = COALESCE($3, version), message_id = COALESCE($4, message_id), content_hash = COALESCE($5, content_hash)
      WHERE intake_key = $1 AND holder = $2 AND state = 'sending'`,
    [intakeKey, holder, s?.version ?? null, s?.messageId ?? null, s?.contentHash ?? null],
  );
}

export async function markSent(db: Queryable, intakeKey: string, gmailMessageId: string): Promise<void> {
  await db.query(
    `UPDATE intake_sends SET state = 'sent', gmail_message_id = COALESCE(gmail_message_id, $2), sent_at = COALESCE(sent_at, now()), lease_until = NULL
      WHERE intake_key = $1`,
    [intakeKey, gmailMessageId],
  );
}

export type SendState = 'none' | 'claimed' | 'sending' | 'sent';

/** Where the intake's send stands: only 'none' and 'claimed' prove that nothing was sent. */
export async function sendState(db: Queryable, intakeKey: string): Promise<SendState> {
  return (await sendRecord(db, intakeKey)).state;
}

/** The send row as far as settling it against Gmail needs. */
export async function sendRecord(db: Queryable, intakeKey: string): Promise<{ state: SendState; messageId?: string; draftMessageId?: string }> {
  const { rows } = await db.query('SELECT state, message_id, draft_message_id FROM intake_sends WHERE intake_key = $1', [intakeKey]);
  if (!rows[0]) return { state: 'none' };
  return { state: rows[0].state, messageId: rows[0].message_id, draftMessageId: rows[0].draft_message_id ?? undefined };
}
