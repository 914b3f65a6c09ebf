import type { Queryable } from './audit.js';

/**
 * Webhook receipts (`webhook_receipts`): the keys of requests and events
 * already received, so a provider's retries and replays are recognised, each
 * until its `expires_at`. The only module that writes them.
 */

/**
 * Claims a receipt key for `ttlMs`; false when it is held by an earlier claim
 * that has not expired (a replay or a retry). An expired receipt is taken
 * afresh, so whether it was pruned yet makes no difference.
 */
export async function claimReceipt(db: Queryable, source: string, key: string, outcome: string, details: Record<string, unknown>, ttlMs: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO webhook_receipts (receipt_key, source, outcome, details, expires_at)
     VALUES ($1, $2, $3, $4, now() + $5 * interval '1 millisecond')
     ON CONFLICT (receipt_key) DO UPDATE
       SET source = EXCLUDED.source, outcome = EXCLUDED.outcome, details = EXCLUDED.details, received_at = now(), expires_at = EXCLUDED.expires_at
       WHERE webhook_receipts.expires_at <= now()`,
    [key, source, outcome, details, Math.round(ttlMs)],
  );
  return (rowCount ?? 0) > 0;
}

/**
 * Deletes expired receipts, `batch` rows per statement, and returns how many
 * went. Safe to run from every replica at once: rows another one is deleting
 * are skipped, not waited for.
 */
export async function pruneReceipts(db: Queryable, batch = 5_000): Promise<number> {
  let total = 0;
  for (;;) {
    const { rowCount } = await db.query(
      `DELETE FROM webhook_receipts WHERE receipt_key IN (
         SELECT receipt_key FROM webhook_receipts WHERE expires_at < now() LIMIT $1 FOR UPDATE SKIP LOCKED)`,
      [batch],
    );
    total += rowCount ?? 0;
    if ((rowCount ?? 0) < batch) return total;
  }
}
