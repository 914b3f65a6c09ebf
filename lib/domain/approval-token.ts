import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';

/**
 * Signed approval tokens: what lets a raw Temporal signal carry a decision
 * that Prospector can trust. The API (for an authenticated approver) signs
 * the decision: which intake, which action, which draft version, the hash of
 * exactly the content it binds, who decides, until when. The worker checks the
 * signature with the same secret before the gate acts on the signal.
 *
 *   pat1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(secret, "pat1." + claims))>
 *
 * The secret is APPROVAL_TOKEN_SECRET from the secret provider; rotating it
 * invalidates the tokens in flight (they live hours, not days).
 */

export const DECISION_ACTIONS = ['approve', 'edit', 'reject'] as const;
export type DecisionAction = (typeof DECISION_ACTIONS)[number];

export interface ApprovalClaims {
  workflowId: string;
  action: DecisionAction;
  /** The draft version the decision is about. */
  version: number;
  /** contentHash of what the decision binds: the approved (or edited-to) content. */
  contentHash: string;
  approver: string;
  /** Seconds since the epoch. */
  expiresAt: number;
  issuedAt: number;
  /** The API key that asked for the token, so the decision joins to it in the audit trail. */
  keyId?: string;
}

const PREFIX = 'pat1';
/** Longer strings are refused before any work: a token is a few hundred bytes. */
export const MAX_TOKEN_LENGTH = 2_048;

const Wire = z.object({
  w: z.string().min(1).max(400),
  x: z.enum(DECISION_ACTIONS),
  v: z.number().int().min(1),
  h: z.string().regex(/^[0-9a-f]{64}$/),
  a: z.string().min(1).max(320),
  e: z.number().int(),
  i: z.number().int(),
  k: z.string().max(100).optional(),
});

const mac = (secret: string, signed: string) => createHmac('sha256', secret).update(signed).digest();

export function signApprovalToken(secret: string, c: ApprovalClaims): string {
  const wire: z.input<typeof Wire> = { w: c.workflowId, x: c.action, v: c.version, h: c.contentHash, a: c.approver, e: c.expiresAt, i: c.issuedAt, ...(c.keyId ? { k: c.keyId } : {}) };
  const payload = `${PREFIX}.${Buffer.from(JSON.stringify(wire)).toString('base64url')}`;
  return `${payload}.${mac(secret, payload).toString('base64url')}`;
}

export type TokenCheck = { ok: true; claims: ApprovalClaims } | { ok: false; reason: string };

/** The claims of a genuine, unexpired token; otherwise why not (never which byte was wrong). */
export function verifyApprovalToken(secrets: readonly string[], token: unknown, nowMs: number): TokenCheck {
  if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH) return { ok: false, reason: 'the approval token is malformed' };
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== PREFIX) return { ok: false, reason: 'the approval token is malformed' };
  const signed = `${parts[0]}.${parts[1]}`;
  const given = Buffer.from(parts[2]!, 'base64url');
  const genuine = secrets.some((secret) => {
    const expected = mac(secret, signed);
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
  if (!genuine) return { ok: false, reason: 'the approval token is not signed by this deployment (forged or from another secret)' };
  let wire: z.output<typeof Wire>;
  try {
    wire = Wire.parse(JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')));
  } catch {
    return { ok: false, reason: 'the approval token is malformed' };
  }
  if (wire.e * 1000 <= nowMs) return { ok: false, reason: `the approval token expired at ${new Date(wire.e * 1000).toISOString()}` };
  return {
    ok: true,
    claims: { workflowId: wire.w, action: wire.x, version: wire.v, contentHash: wire.h, approver: wire.a, expiresAt: wire.e, issuedAt: wire.i, ...(wire.k ? { keyId: wire.k } : {}) },
  };
}
