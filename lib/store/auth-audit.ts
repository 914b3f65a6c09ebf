import type { Queryable } from './audit.js';

/**
 * The API's auth decision log (`api_auth_audit`, UPDATE refused by trigger):
 * one row per request the security middleware decided on (requests refused
 * for an address's spent failed-auth budget are counted in fewer rows, see
 * `attempts`). The only module that writes it; api/security/audit.ts queues
 * the rows and calls it per batch; rows past the retention are deleted here.
 */

export const DECISIONS = ['allow', 'deny_unauthenticated', 'deny_scope', 'deny_rate', 'deny_revoked', 'deny_expired'] as const;
export type Decision = (typeof DECISIONS)[number];

export interface AuthAuditRow {
  at: Date;
  keyId: string | null;
  keyPrefix: string | null;
  route: string;
  operationId: string | null;
  method: string;
  requestId: string | null;
  traceId: string | null;
  decision: Decision;
  status: number;
  scope: string | null;
  clientIp: string | null;
  /** Refusals this row stands for (rows of an address over its failed-auth budget are counted); 1 otherwise. */
  attempts?: number;
}

/** Inserts a batch of rows in one statement, whatever its size. */
export async function insertAuthAudit(db: Queryable, rows: AuthAuditRow[]): Promise<void> {
  const col = <K extends keyof AuthAuditRow>(k: K) => rows.map((r) => r[k]);
  await db.query(
    `INSERT INTO api_auth_audit (at, key_id, key_prefix, route, operation_id, method, request_id, trace_id, decision, status, scope, client_ip, attempts)
     SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::smallint[], $11::text[], $12::text[], $13::int[])`,
    [
      col('at'), col('keyId'), col('keyPrefix'), col('route'), col('operationId'), col('method'),
      col('requestId'), col('traceId'), col('decision'), col('status'), col('scope'), col('clientIp'),
      rows.map((r) => r.attempts ?? 1),
    ],
  );
}

/**
 * Deletes rows older than `retentionMs`, `batch` rows per statement, and
 * returns how many went. Safe to run from every replica at once: rows another
 * one is deleting are skipped, not waited for.
 */
export async function pruneAuthAudit(db: Queryable, retentionMs: number, batch = 5_000): Promise<number> {
  let total = 0;
  for (;;) {
    const { rowCount } = await db.query(
      `DELETE FROM api_auth_audit WHERE id IN (
         SELECT id FROM api_auth_audit WHERE at < now() - $1 * interval '1 millisecond' LIMIT $2 FOR UPDATE SKIP LOCKED)`,
      [Math.round(retentionMs), batch],
    );
    total += rowCount ?? 0;
    if ((rowCount ?? 0) < batch) return total;
  }
}
