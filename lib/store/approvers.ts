import type pg from 'pg';
import { z } from 'zod';
import { DECISION_ACTIONS, type DecisionAction } from '../domain/approval-token.js';
import { inTransaction } from './db.js';
import { appendAudit, type Queryable } from './audit.js';

/**
 * The approver registry (`approvers`): the people whose decisions on drafts
 * count, what each may do (approve, edit, reject) and, optionally, for which
 * HubSpot owners and prospect domains. The only module that writes the table;
 * each change leaves an audit row naming who made it.
 */

export interface Approver {
  identity: string;
  name: string | null;
  actions: DecisionAction[];
  /** HubSpot owner emails or ids whose prospects this approver may decide on; null: any. */
  owners: string[] | null;
  /** Prospect domains (subdomains included); null: any. */
  domains: string[] | null;
  createdBy: string;
  createdAt: string;
  updatedAt: string;
}

/** An identity as stored: a trimmed, lower-case email address. */
export const identitySchema = z
  .string()
  .trim()
  .toLowerCase()
  .pipe(z.email({ error: 'expected an email address, e.g. ana@acme.example' }).max(320));

const domainSchema = z
  .string()
  .trim()
  .toLowerCase()
  .regex(/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/, 'expected a domain such as acme.example');

export const approverInputSchema = z
  .object({
    identity: identitySchema,
    name: z.string().trim().min(1).max(200).optional(),
    actions: z.array(z.enum(DECISION_ACTIONS)).min(1).max(3).default(['approve', 'edit', 'reject']),
    owners: z.array(z.string().trim().toLowerCase().min(1).max(320)).min(1).max(100).optional(),
    domains: z.array(domainSchema).min(1).max(100).optional(),
  })
  .strict();
export type ApproverInput = z.input<typeof approverInputSchema>;

const toApprover = (r: Record<string, any>): Approver => ({
  identity: r.identity,
  name: r.name ?? null,
  actions: r.actions,
  owners: r.owners ?? null,
  domains: r.domains ?? null,
  createdBy: r.created_by,
  createdAt: new Date(r.created_at).toISOString(),
  updatedAt: new Date(r.updated_at).toISOString(),
});

/** Adds an approver or replaces what an existing one may do. */
export async function putApprover(pool: pg.Pool, input: ApproverInput, actor: string): Promise<{ approver: Approver; created: boolean }> {
  const a = approverInputSchema.parse(input);
  return inTransaction(pool, async (db) => {
    const { rows } = await db.query(
      `INSERT INTO approvers (identity, name, actions, owners, domains, created_by) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (identity) DO UPDATE SET name = COALESCE(EXCLUDED.name, approvers.name), actions = EXCLUDED.actions,
         owners = EXCLUDED.owners, domains = EXCLUDED.domains, updated_at = now()
       RETURNING *, (xmax = 0) AS created`,
      [a.identity, a.name ?? null, [...new Set(a.actions)], a.owners ?? null, a.domains ?? null, actor],
    );
    const approver = toApprover(rows[0]);
    await appendAudit(db, {
      actor,
      kind: 'approver',
      action: rows[0].created ? 'add' : 'update',
      outcome: 'ok',
      details: { identity: approver.identity, actions: approver.actions, owners: approver.owners, domains: approver.domains },
    });
    return { approver, created: rows[0].created };
  });
}

export async function removeApprover(pool: pg.Pool, identity: string, actor: string): Promise<boolean> {
  return inTransaction(pool, async (db) => {
    const { rowCount } = await db.query('DELETE FROM approvers WHERE identity = $1', [identity.trim().toLowerCase()]);
    if (rowCount) await appendAudit(db, { actor, kind: 'approver', action: 'remove', outcome: 'ok', details: { identity: identity.trim().toLowerCase() } });
    return Boolean(rowCount);
  });
}

export async function listApprovers(db: Queryable): Promise<Approver[]> {
  const { rows } = await db.query('SELECT * FROM approvers ORDER BY identity');
  return rows.map(toApprover);
}

export async function findApprover(db: Queryable, identity: string): Promise<Approver | undefined> {
  const { rows } = await db.query('SELECT * FROM approvers WHERE identity = $1', [identity.trim().toLowerCase()]);
  return rows[0] ? toApprover(rows[0]) : undefined;
}
