import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { composeRaw } from '../../activities/intake/gmail.js';
import { contentHash, contentOfMime, describeDifference, draftHash, fieldHashes, contentOfDraft } from '../../lib/domain/approval-content.js';
import { decidedDraft, refusalFor } from '../../lib/domain/approvals.js';
import { signApprovalToken, verifyApprovalToken, type ApprovalClaims } from '../../lib/domain/approval-token.js';
import { ConfigError, loadConfig } from '../../lib/config/config.js';
import type { DraftContent } from '../../lib/domain/draft.js';
import { OPT_OUT_LINE } from '../../lib/domain/email-guards.js';
import { effectiveSendMode, sendRefusal } from '../../lib/domain/send-policy.js';
import type { Approver } from '../../lib/store/approvers.js';
import { inbound, MAX_SIGNAL_BYTES, screenSignal, type GateView } from '../../workflows/intake/gate.js';

/** The rules behind "only a known approver's approval of the exact content is sent", without servers. */

const base: DraftContent = {
  to: { address: 'dana@acme.example', name: 'Dana Ruiz' },
  from: { address: 'sales@prospector.example', name: 'Sam' },
  subject: 'Quick idea for Acme',
  body: `Hi Dana,\n\nWould Tuesday work?\n\nSam\n\n--\n${OPT_OUT_LINE}`,
  messageId: '<intake-k-v1@prospector.example>',
  intakeKey: 'k',
  version: 1,
};

describe('approved content', () => {
  it('hashes the same whether read from the draft we compose or from the MIME Gmail holds', async () => {
    const line = fc.string({ unit: 'grapheme', maxLength: 200 }).map((s) => s.replace(/[\r\n]/g, ' '));
    await fc.assert(
      fc.asyncProperty(
        line.map((s) => s.trim()).filter((s) => s.length > 0),
        fc.array(line, { minLength: 1, maxLength: 12 }).map((lines) => lines.join('\n')),
        fc.option(fc.constant({ threadId: 't1', inReplyTo: '<a@x.example>', references: ['<a@x.example>', '<b@x.example>'] as string[] }), { nil: undefined }),
        async (subject, body, reply) => {
          const d: DraftContent = { ...base, subject, body, ...(reply ? { reply } : {}) };
          const parsed = await contentOfMime(Buffer.from(await composeRaw(d), 'base64url'));
          expect(parsed).toEqual(contentOfDraft(d));
          expect(contentHash(parsed)).toBe(draftHash(d));
        },
      ),
      { numRuns: 150 },
    );
  });

  it('changes with every part a reader sees, and names which part changed', async () => {
    const approved = fieldHashes(contentOfDraft(base));
    for (const [change, name] of [
      [{ body: `${base.body} P.S. 50% off` }, 'the body'],
      [{ subject: 'Other' }, 'the subject'],
      [{ to: { address: 'someone@else.example' } }, 'the recipients'],
      [{ from: { address: 'ceo@prospector.example' } }, 'the sender'],
      [{ reply: { threadId: 't', inReplyTo: '<x@y.example>', references: ['<x@y.example>'] } }, 'the In-Reply-To header and the References header'],
    ] as const) {
      const changed = { ...base, ...change } as DraftContent;
      expect(draftHash(changed)).not.toBe(draftHash(base));
      expect(describeDifference(approved, fieldHashes(contentOfDraft(changed)))).toBe(name);
    }
    // A display name is not content: who receives it is the same.
    expect(draftHash({ ...base, to: { address: 'DANA@acme.example', name: 'D.' } })).toBe(draftHash(base));
  });

  it('an edit produces the next version with our opt-out line, or the problems that stop it', () => {
    const edited = decidedDraft({ action: 'approve', edit: { body: 'Hi Dana,\n\nShorter: does Tuesday suit you?' } }, base);
    expect(edited).toMatchObject({ ok: true, draft: { version: 2, messageId: '<intake-k-v2@prospector.example>' } });
    expect(edited.ok && edited.draft.body.endsWith(OPT_OUT_LINE)).toBe(true);
    expect(decidedDraft({ action: 'edit', edit: { body: 'see https://evil.example' } }, base)).toEqual({ ok: false, problems: ['body contains a link'] });
    expect(decidedDraft({ action: 'reject', edit: { body: 'ignored' } }, base)).toEqual({ ok: true, draft: base });
  });
});

describe('approval tokens', () => {
  const secret = 's'.repeat(40);
  const now = Date.parse('2026-12-02T10:00:00Z');
  const claims: ApprovalClaims = { workflowId: 'prospect-dana@acme.example', action: 'approve', version: 2, contentHash: 'a'.repeat(64), approver: 'ana@acme.example', expiresAt: now / 1000 + 3600, issuedAt: now / 1000, keyId: 'key_0123456789ab' };

  it('verifies what it signed, with the current or the previous secret', () => {
    const token = signApprovalToken(secret, claims);
    expect(verifyApprovalToken([secret], token, now)).toEqual({ ok: true, claims });
    expect(verifyApprovalToken(['t'.repeat(40), secret], token, now)).toMatchObject({ ok: true });
  });

  it('refuses forged, altered, expired and malformed tokens, saying which', () => {
    const token = signApprovalToken(secret, claims);
    const [prefix, payload, mac] = token.split('.');
    const altered = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload!, 'base64url').toString()), a: 'mallory@acme.example' })).toString('base64url');
    expect(verifyApprovalToken([secret], `${prefix}.${altered}.${mac}`, now)).toMatchObject({ ok: false, reason: expect.stringMatching(/not signed by this deployment/) });
    expect(verifyApprovalToken([secret], signApprovalToken('x'.repeat(40), claims), now)).toMatchObject({ ok: false, reason: expect.stringMatching(/not signed by this deployment/) });
    expect(verifyApprovalToken([secret], token, now + 3_600_000)).toMatchObject({ ok: false, reason: expect.stringMatching(/expired at 2026-12-02T11:00:00\.000Z/) });
    for (const bad of ['', 'pat1.x', 'pat2.a.b', 'x'.repeat(5_000), 42]) expect(verifyApprovalToken([secret], bad, now)).toMatchObject({ ok: false, reason: 'the approval token is malformed' });
  });
});

describe('the gate rules', () => {
  const open: GateView = { open: true, version: 2 };
  const at = '2026-12-02T10:00:00Z';
  const screen = (signal: 'approve' | 'edit' | 'reject', payload: unknown, gate = open, early = false) => screenSignal(inbound(signal, payload, at, early), gate);

  it('passes a well-formed decision on for authorisation, with the approver and version it names', () => {
    expect(screen('approve', { version: '2', approver: ' Ana@acme.example ', token: 'pat1.a.b' })).toEqual({ ok: true, request: { action: 'approve', approver: 'Ana@acme.example', version: 2, token: 'pat1.a.b' } });
    expect(screen('edit', { version: 2, editor: 'ana@acme.example', body: 'new' })).toEqual({ ok: true, request: { action: 'edit', approver: 'ana@acme.example', version: 2, edit: { body: 'new' } } });
    expect(screen('reject', { approver: 'ana@acme.example', reason: 'no' }, open, true)).toMatchObject({ ok: true, request: { action: 'reject' } });
  });

  it.each([
    ['oversized', 'approve', { version: 2, approver: 'a@b.example', body: 'x'.repeat(MAX_SIGNAL_BYTES) }, open, false, /^the payload is \d+ bytes; signals are limited to 16384 bytes$/],
    ['decided', 'approve', { version: 2, approver: 'a@b.example' }, { ...open, decided: 'rejected' as const }, false, /^the intake was already decided \(rejected\)$/],
    ['early approve', 'approve', { version: 2, approver: 'a@b.example' }, open, true, /before the draft was ready/],
    ['gate closed', 'edit', { version: 2, editor: 'a@b.example', subject: 's' }, { open: false, version: 0 }, false, /before the draft was ready/],
    ['no approver', 'approve', { version: 2 }, open, false, /^the payload names no approver$/],
    ['approver on an edit', 'edit', { version: 2, approver: 'a@b.example', body: 'x' }, open, false, /^the payload names no editor$/],
    ['no version', 'approve', { approver: 'a@b.example' }, open, false, /names no draft version \(the current version is 2\)/],
    ['stale version', 'approve', { version: 1, approver: 'a@b.example' }, open, false, /^draft version 1 is not the current version 2$/],
    ['empty edit', 'edit', { version: 2, editor: 'a@b.example', subject: '  ' }, open, false, /^an edit needs a subject or a body$/],
    ['token not a string', 'approve', { version: 2, approver: 'a@b.example', token: 7 }, open, false, /^the approval token is malformed$/],
    ['not an object', 'approve', 'approve it', open, false, /^the payload names no approver$/],
  ] as const)('refuses: %s', (_label, signal, payload, gate, early, reason) => {
    const result = screen(signal, payload, gate, early);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toMatch(reason);
  });

  it('keeps nothing of an oversized payload but whom it names', () => {
    const msg = inbound('approve', { approver: 'a@b.example', body: 'x'.repeat(2 * 1024 * 1024) }, at, false);
    expect(msg).toMatchObject({ payload: {}, actor: 'a@b.example' });
    expect(msg.bytes).toBeGreaterThan(2 * 1024 * 1024);
  });
});

describe('who may decide', () => {
  const approver = (a: Partial<Approver>): Approver => ({ identity: 'ana@acme.example', name: null, actions: ['approve', 'edit', 'reject'], owners: null, domains: null, createdBy: 't', createdAt: '', updatedAt: '', ...a });
  const subject = { owner: { id: '75000001', email: 'sales@prospector.example' }, domain: 'eu.acme.example' };

  it('is a registered approver allowed the action, and the owner and domain when limited', () => {
    expect(refusalFor(undefined, 'x@y.example', 'approve', subject)).toBe('x@y.example is not a registered approver');
    expect(refusalFor(approver({ actions: ['reject'] }), 'ana@acme.example', 'edit', subject)).toBe('ana@acme.example may not edit drafts (allowed: reject)');
    expect(refusalFor(approver({ domains: ['acme.example'] }), 'ana@acme.example', 'approve', subject)).toBeUndefined();
    expect(refusalFor(approver({ domains: ['cme.example'] }), 'ana@acme.example', 'approve', subject)).toMatch(/may not decide for eu\.acme\.example's domain/);
    expect(refusalFor(approver({ owners: ['75000001'] }), 'ana@acme.example', 'approve', subject)).toBeUndefined();
    expect(refusalFor(approver({ owners: ['other@prospector.example'] }), 'ana@acme.example', 'approve', subject)).toMatch(/owned by sales@prospector\.example/);
    expect(refusalFor(approver({}), 'ana@acme.example', 'reject', subject)).toBeUndefined();
  });
});

describe('the deployment decides whether Prospector sends', () => {
  const draftOnly = { outreach: { sendMode: 'draft_only' } } as Parameters<typeof effectiveSendMode>[0];
  const sends = { outreach: { sendMode: 'send_on_approval' } } as Parameters<typeof effectiveSendMode>[0];

  it('lets an intake narrow the mode, never widen it', () => {
    expect(effectiveSendMode(draftOnly, 'send_on_approval')).toEqual({ mode: 'draft_only', narrowed: true });
    expect(effectiveSendMode(draftOnly, undefined)).toEqual({ mode: 'draft_only', narrowed: false });
    expect(effectiveSendMode(sends, 'draft_only')).toEqual({ mode: 'draft_only', narrowed: false });
    expect(effectiveSendMode(sends, 'yolo')).toEqual({ mode: 'send_on_approval', narrowed: false });
    expect(sendRefusal(draftOnly)).toMatch(/does not send email/);
    expect(sendRefusal(sends)).toBeUndefined();
  });

  it('refuses a production start with an unauthenticated Temporal connection unless told so, and without a token secret', async () => {
    const problemsOf = async (env: NodeJS.ProcessEnv) => {
      try {
        await loadConfig({ env });
        return [];
      } catch (err) {
        if (err instanceof ConfigError) return err.problems.map((p) => `${p.setting}: ${p.message}`);
        throw err;
      }
    };
    const production = { PROSPECTOR_ENV: 'production', DATABASE_URL: 'postgres://db/p' };
    const problems = await problemsOf(production);
    expect(problems).toEqual(expect.arrayContaining([expect.stringMatching(/^TEMPORAL_ADDRESS: production needs an authenticated Temporal connection/), expect.stringMatching(/^APPROVAL_TOKEN_SECRET: required in production/)]));
    const allowed = await problemsOf({ ...production, TEMPORAL_ALLOW_INSECURE: 'true', APPROVAL_TOKEN_SECRET: 'k'.repeat(40) });
    expect(allowed.filter((p) => /^(TEMPORAL_ADDRESS|APPROVAL_TOKEN_SECRET)/.test(p))).toEqual([]);
    expect(await problemsOf({ ...production, TEMPORAL_API_KEY: 'temporal-cloud-key', APPROVAL_TOKEN_SECRET: 'short' })).toEqual(
      expect.arrayContaining([expect.stringMatching(/^APPROVAL_TOKEN_SECRET: must be at least 32 characters/)]),
    );
    expect((await problemsOf({ ...production, TEMPORAL_API_KEY: 'temporal-cloud-key' })).some((p) => p.startsWith('TEMPORAL_ADDRESS'))).toBe(false);
  });
});
