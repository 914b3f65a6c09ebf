import type { Queryable } from './audit.js';

/**
 * Webhook receipts (`webhook_receipts`): the keys of requests and submissions
 * already received, so a provider's retries and replays are recognised. The
 * only module that writes them.
 */

/** Claims a receipt key; false when it was claimed before (a replay or a retry). */
export async function claimReceipt(db: Queryable, source: string, key: string, outcome: string, details: Record<string, unknown>): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO webhook_receipts (receipt_key, source, outcome, details) VALUES ($1, $2, $3, $4) ON CONFLICT (receipt_key) DO NOTHING`,
    [key, source, outcome, details],
  );
  return (rowCount ?? 0) > 0;
}
