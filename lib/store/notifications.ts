import type pg from 'pg';
import type { Queryable } from './audit.js';

/**
 * The Slack messages the harvest owes and which signal each one carries
 * (`signal_notifications`, `signal_notify_claims`): the only module that
 * writes them, so "each signal in one message, each message posted once"
 * rests on the keys and conditions here. A posted message's signals get their
 * notified_at from signals.ts (`markNotified`), in the caller's transaction.
 */

export type NotificationKind = 'single' | 'digest';

export interface SignalNotification {
  messageKey: string;
  runKey: string;
  kind: NotificationKind;
  signalIds: string[];
  channel: string;
  attemptedAt: Date | null;
  postedAt: Date | null;
}

/** Serialises the planners of one run until the caller's transaction ends. */
export async function lockRunPlanning(client: pg.PoolClient, runKey: string): Promise<void> {
  await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`notify:${runKey}`]);
}

export async function runHasNotifications(db: Queryable, runKey: string): Promise<boolean> {
  const { rowCount } = await db.query('SELECT 1 FROM signal_notifications WHERE run_key = $1 LIMIT 1', [runKey]);
  return Boolean(rowCount);
}

/** Gives `runKey` the messages of other runs left unposted for longer than `staleAfterMs` (those runs died). */
export async function adoptStaleNotifications(db: Queryable, runKey: string, staleAfterMs: number): Promise<void> {
  await db.query(
    `UPDATE signal_notifications SET run_key = $1 WHERE posted_at IS NULL AND run_key <> $1 AND created_at < now() - make_interval(secs => $2)`,
    [runKey, staleAfterMs / 1000],
  );
}

/**
 * Signals at or above the threshold that are neither notified nor claimed,
 * best first. Their rows stay locked until the transaction ends; rows another
 * planner holds are skipped.
 */
export async function claimableSignalIds(db: Queryable, threshold: number): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT id FROM signals s
      WHERE score >= $1 AND notified_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM signal_notify_claims c WHERE c.signal_id = s.id)
      ORDER BY score DESC, id LIMIT 100000 FOR UPDATE SKIP LOCKED`,
    [threshold],
  );
  return rows.map((r) => r.id);
}

export interface NotifyClaim {
  signalId: string;
  messageKey: string;
}

/** Gives each signal to its message; returns the claims made (a signal already claimed keeps its first claim). */
export async function claimSignals(db: Queryable, claims: NotifyClaim[]): Promise<NotifyClaim[]> {
  const { rows } = await db.query<{ signal_id: string; message_key: string }>(
    `INSERT INTO signal_notify_claims (signal_id, message_key) SELECT * FROM unnest($1::bigint[], $2::text[])
     ON CONFLICT (signal_id) DO NOTHING RETURNING signal_id::text, message_key`,
    [claims.map((c) => c.signalId), claims.map((c) => c.messageKey)],
  );
  return rows.map((r) => ({ signalId: r.signal_id, messageKey: r.message_key }));
}

/** Records an owed message; a key already recorded keeps its first row. */
export async function addNotification(
  db: Queryable,
  n: Pick<SignalNotification, 'messageKey' | 'runKey' | 'kind' | 'signalIds' | 'channel'>,
): Promise<void> {
  await db.query(
    `INSERT INTO signal_notifications (message_key, run_key, kind, signal_ids, channel) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (message_key) DO NOTHING`,
    [n.messageKey, n.runKey, n.kind, n.signalIds, n.channel],
  );
}

/** The keys of a run's messages not yet posted, oldest first. */
export async function owedMessageKeys(db: Queryable, runKey: string): Promise<string[]> {
  const { rows } = await db.query<{ message_key: string }>(
    'SELECT message_key FROM signal_notifications WHERE run_key = $1 AND posted_at IS NULL ORDER BY created_at, message_key',
    [runKey],
  );
  return rows.map((r) => r.message_key);
}

export async function getNotification(db: Queryable, messageKey: string): Promise<SignalNotification | null> {
  const { rows } = await db.query(
    `SELECT message_key, run_key, kind, signal_ids::text[] AS signal_ids, channel, attempted_at, posted_at
       FROM signal_notifications WHERE message_key = $1`,
    [messageKey],
  );
  const r = rows[0];
  return r
    ? { messageKey: r.message_key, runKey: r.run_key, kind: r.kind, signalIds: r.signal_ids, channel: r.channel, attemptedAt: r.attempted_at, postedAt: r.posted_at }
    : null;
}

/** Recorded before each post, so a retry whose answer was lost looks in the channel history first. */
export async function markNotificationAttempted(db: Queryable, messageKey: string): Promise<void> {
  await db.query('UPDATE signal_notifications SET attempted_at = now() WHERE message_key = $1', [messageKey]);
}

export async function markNotificationPosted(db: Queryable, messageKey: string, slack: { channelId: string; ts: string }): Promise<void> {
  await db.query('UPDATE signal_notifications SET posted_at = now(), slack_ts = $2, slack_channel_id = $3 WHERE message_key = $1', [
    messageKey,
    slack.ts,
    slack.channelId,
  ]);
}
