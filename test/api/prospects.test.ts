import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../../activities/index.js';
import { loadConfig, type Config } from '../../lib/config/config.js';
import { createLogger } from '../../lib/config/logger.js';
import type { Sandbox } from '../../sandbox/server.js';
import { quietTemporalRuntime, testDatabase, testSandbox, testTemporal, testWorker, uniqueTaskQueue } from '../helpers/stack.js';
import { registerApprovers, uniqueLead, waitForReadModel, waitForStage } from '../workflow/intake-helpers.js';
import { startProspectsApi, type ProspectsApi } from './prospects-api.js';
import { approveSignal } from '../../workflows/intake/messages.js';

/**
 * The prospects API over HTTP, with keys and scopes, against a real worker:
 * submit (202 queued, 400 naming the field, attach; the dispatcher starts the
 * intake), list and read from the read
 * model, approve / edit / reject as signals (stale refused with 409), and the
 * screening policy (suppressions, pause). Every response is checked against
 * the OpenAPI document.
 */

describe('prospects API', () => {
  let db: Awaited<ReturnType<typeof testDatabase>>;
  let temporal: Awaited<ReturnType<typeof testTemporal>>;
  let sandbox: Sandbox;
  let config: Config;
  let worker: Awaited<ReturnType<typeof testWorker>> | undefined;
  let api: ProspectsApi;
  let writer: string;
  let reader: string;
  let approver: string;
  let stranger: string;
  let admin: string;
  const taskQueue = uniqueTaskQueue('intake-api');

  beforeAll(async () => {
    quietTemporalRuntime('ERROR');
    let sb;
    [db, temporal, sb] = await Promise.all([testDatabase(), testTemporal(), testSandbox()]);
    sandbox = sb.sandbox;
    config = await loadConfig({ env: {}, overrides: { SANDBOX_URL: sandbox.url } });
    worker = await testWorker(temporal, createActivities({ config, pool: db.pool, log: createLogger({ name: 't', level: 'silent' }) }), taskQueue);
    api = await startProspectsApi({ config, pool: db.pool, temporal: temporal.client, taskQueue });
    [writer, reader, approver, stranger, admin] = await Promise.all([
      api.key(['prospects:write']),
      api.key(['prospects:read']),
      api.key(['approvals:write'], 'ana@prospector.example'),
      api.key(['approvals:write'], 'mallory@prospector.example'),
      api.key(['admin']),
    ]);
    await registerApprovers(db.pool, ['ana@prospector.example']);
  });

  afterAll(async () => {
    await api?.close();
    await worker?.stop();
    await sandbox?.close();
    await temporal?.close();
    await db?.drop();
  });

  const submit = (body: unknown, key = writer) => api.call('POST', '/v1/prospects', { key, body });
  const awaiting = (id: string) => waitForReadModel(db.pool, id, ['AWAITING_APPROVAL']);

  it('refuses bad input with a 400 naming the field, and no key with a 401', async () => {
    const bad = await submit({ email: 'not an address', name: 'X' });
    expect(bad.status).toBe(400);
    expect(bad.headers.get('content-type')).toContain('application/problem+json');
    expect(bad.body.errors).toEqual([{ field: 'body.email', message: '"not an address" is not an email address (expected name@domain)' }]);

    const several = await submit({ email: 'a@b.example', timeZone: 'Mars/Olympus', approvalTimeout: 'soon', colour: 'red' });
    expect(several.status).toBe(400);
    expect(several.body.errors.map((e: { field: string }) => e.field).sort()).toEqual(['body', 'body.approvalTimeout', 'body.timeZone']);
    expect(several.body.detail).toMatch(/colour/);

    expect((await submit({}, '')).status).toBe(401);
    expect((await submit({ email: 'x@y.example' }, reader)).status).toBe(403);
  });

  it('submits (202 + Location), attaches a duplicate, lists by stage with pagination, and shows one prospect', async () => {
    const lead = uniqueLead();
    const first = await submit({ ...lead, notes: 'We need this by Q3.' });
    expect(first.status).toBe(202);
    expect(first.body).toEqual({ status: 'queued', email: lead.email, id: `prospect-${lead.email}`, submissionId: expect.any(String), statusUrl: `/v1/prospects/${encodeURIComponent(first.body.id)}` });
    expect(first.headers.get('location')).toBe(first.body.statusUrl);

    // Queued or already running: either way the second submission joins the first's intake.
    const again = await submit({ email: lead.email.replace('@', '+second@').toUpperCase() });
    expect(again.status).toBe(202);
    expect(again.body).toMatchObject({ status: 'attached', id: first.body.id });
    expect(again.body.submissionId).not.toBe(first.body.submissionId);
    const [firstRun, againRun] = await Promise.all([api.runOf(first.body.submissionId), api.runOf(again.body.submissionId)]);
    expect(firstRun.outcome).toBe('started');
    expect(againRun).toEqual({ ...firstRun, outcome: 'attached' });

    // An internationalised domain is taken in its punycode form; the read model shows both.
    const local = `zoe${Date.now().toString(36)}`;
    const idn = await submit({ email: `${local}@Müller.de`, name: 'Zoë Müller' });
    expect(idn.status).toBe(202);
    expect(idn.body).toMatchObject({ status: 'queued', email: `${local}@xn--mller-kva.de`, id: `prospect-${local}@xn--mller-kva.de` });
    const idnShown = await api.call('GET', `/v1/prospects/${encodeURIComponent(`${local}@müller.de`)}`, { key: reader });
    expect(idnShown.status).toBe(200);
    expect(idnShown.body).toMatchObject({ email: `${local}@xn--mller-kva.de`, emailUnicode: `${local}@müller.de`, domain: 'xn--mller-kva.de', name: 'Zoë Müller' });

    const others = await Promise.all([submit(uniqueLead()), submit(uniqueLead())]);
    const ids = [first.body.id, ...others.map((o) => o.body.id)];
    await Promise.all(ids.map(awaiting));

    const page1 = await api.call('GET', '/v1/prospects?stage=AWAITING_APPROVAL&limit=2', { key: reader });
    expect(page1.status).toBe(200);
    expect(page1.body.items).toHaveLength(2);
    expect(page1.body.nextCursor).toBeTruthy();
    const page2 = await api.call('GET', `/v1/prospects?stage=AWAITING_APPROVAL&limit=2&cursor=${page1.body.nextCursor}`, { key: reader });
    const listed = [...page1.body.items, ...page2.body.items].map((p: { id: string }) => p.id);
    for (const id of ids) expect(listed).toContain(id);
    expect(new Set(listed).size).toBe(listed.length);
    expect((await api.call('GET', '/v1/prospects?stage=NOPE', { key: reader })).body.errors[0].field).toBe('query.stage');
    expect((await api.call('GET', '/v1/prospects?cursor=garbage', { key: reader })).status).toBe(400);

    const byEmail = await api.call('GET', `/v1/prospects/${encodeURIComponent(lead.email)}`, { key: reader });
    expect(byEmail.status).toBe(200);
    const p = byEmail.body;
    expect(p).toMatchObject({ id: first.body.id, stage: 'AWAITING_APPROVAL', approvalState: 'AWAITING_APPROVAL', draftVersion: 1, mode: 'draft_only' });
    expect(p.draft).toMatchObject({ version: 1, subject: expect.any(String) });
    expect(p.slots).toHaveLength(3);
    expect(p.live.stage).toBe('AWAITING_APPROVAL');
    expect(p.audit.map((a: { action: string }) => a.action)).toEqual(expect.arrayContaining(['submit', 'screen', 'draft', 'await_approval']));
    expect(p.runId).toBe(firstRun.runId);
    const outcomes = (action: string) => p.audit.filter((a: { action: string }) => a.action === action).map((a: { outcome: string }) => a.outcome);
    expect(outcomes('submit')).toEqual(['queued', 'attached']);
    expect(outcomes('dispatch').sort()).toEqual(['attached', 'started']);
    expect((await api.call('GET', '/v1/prospects/prospect-nobody@nowhere.example', { key: reader })).status).toBe(404);
  });

  it('approve / edit / reject are signed signals in the key\'s identity: strangers get 403, stale versions 409, ?wait=true returns what the workflow did', async () => {
    const [a, b] = await Promise.all([submit(uniqueLead()), submit(uniqueLead(), writer)]);
    await Promise.all([awaiting(a.body.id), awaiting(b.body.id)]);
    const path = (id: string, action: string, wait = true) => `/v1/prospects/${encodeURIComponent(id)}/${action}${wait ? '?wait=true' : ''}`;

    expect((await api.call('POST', path(a.body.id, 'approve'), { key: reader, body: { version: 1 } })).status).toBe(403);
    // A key that belongs to someone who is not a registered approver cannot decide, and nobody can name another approver.
    const strange = await api.call('POST', path(a.body.id, 'approve'), { key: stranger, body: { version: 1 } });
    expect(strange.status).toBe(403);
    expect(strange.body.detail).toMatch(/acts for mallory@prospector\.example: mallory@prospector\.example is not a registered approver/);
    const named = await api.call('POST', path(a.body.id, 'approve'), { key: stranger, body: { version: 1, approver: 'ana@prospector.example' } });
    expect(named.status).toBe(400);
    expect(JSON.stringify(named.body.errors)).toMatch(/approver/);

    const edited = await api.call('POST', path(a.body.id, 'edit'), { key: approver, body: { version: 1, subject: 'Shorter subject' } });
    expect(edited).toMatchObject({ status: 200, body: { outcome: 'applied', accepted: true } });
    const stale = await api.call('POST', path(a.body.id, 'approve'), { key: approver, body: { version: 1 } });
    expect(stale.status).toBe(409);
    expect(stale.body).toMatchObject({ currentVersion: 2 });
    expect(stale.body.detail).toMatch(/version 1 is stale: the current version is 2/);
    expect((await api.call('POST', path(a.body.id, 'edit'), { key: approver, body: { version: 2 } })).body.errors[0].field).toBe('body.body');
    const badEdit = await api.call('POST', path(a.body.id, 'edit'), { key: approver, body: { version: 2, body: 'See https://evil.example now' } });
    expect(badEdit).toMatchObject({ status: 422, body: { problems: expect.arrayContaining(['body contains a link']) } });

    const approved = await api.call('POST', path(a.body.id, 'approve'), { key: approver, body: { version: 2, reason: 'ok' }, headers: { 'idempotency-key': 'approve-a-1' } });
    expect(approved).toMatchObject({ status: 200, body: { outcome: 'approved', requestId: 'approve-a-1' } });
    await expect.poll(async () => (await api.call('GET', `/v1/prospects/${encodeURIComponent(a.body.id)}`, { key: reader })).body.stage, { timeout: 15_000 }).toBe('APPROVED');
    const after = await api.call('POST', path(a.body.id, 'approve'), { key: approver, body: { version: 2 } });
    expect(after.status).toBe(409);
    expect(after.body.detail).toMatch(/not awaiting approval \(stage APPROVED\)/);
    const approvedRow = (await api.call('GET', `/v1/prospects/${encodeURIComponent(a.body.id)}`, { key: reader })).body;
    // The decision joins to the key that made it.
    const keyId = (await db.pool.query(`SELECT id FROM api_keys WHERE identity = 'ana@prospector.example'`)).rows[0].id;
    expect(approvedRow.audit.find((x: { action: string }) => x.action === 'approve')).toMatchObject({
      kind: 'decision',
      actor: 'ana@prospector.example',
      outcome: 'approved',
      details: { signed: true, keyId, version: 2 },
    });

    expect((await api.call('POST', path(b.body.id, 'reject'), { key: approver, body: { reason: 'not a fit', approver: 'lee' } })).status).toBe(400);
    const rejected = await api.call('POST', path(b.body.id, 'reject'), { key: approver, body: { reason: 'not a fit' } });
    expect(rejected).toMatchObject({ status: 200, body: { outcome: 'rejected' } });
    expect((await api.call('POST', path(b.body.id, 'reject'), { key: approver, body: {} })).body.errors[0].field).toBe('body.reason');
  });

  it('issues approval tokens to approvers: a raw Temporal signal carrying one decides, a changed one is refused', async () => {
    const a = await submit(uniqueLead());
    await awaiting(a.body.id);
    const tokenPath = `/v1/prospects/${encodeURIComponent(a.body.id)}/approval-token`;
    expect((await api.call('POST', tokenPath, { key: stranger, body: { action: 'approve', version: 1 } })).status).toBe(403);
    const issued = await api.call('POST', tokenPath, { key: approver, body: { action: 'approve', version: 1, reason: 'from a script' } });
    expect(issued).toMatchObject({ status: 200, body: { approver: 'ana@prospector.example', signal: { name: 'approve', input: { version: 1, approver: 'ana@prospector.example' } } } });
    expect(issued.body.command).toMatch(/^temporal workflow signal --namespace default --workflow-id '.+' --name approve --input '\{.*"token":"pat1\./);
    const handle = temporal.client.workflow.getHandle(a.body.id);
    // The same token with another version or approver is not this decision.
    await handle.signal(approveSignal, { ...issued.body.signal.input, approver: 'lee@prospector.example' });
    await expect.poll(async () => (await api.call('GET', `/v1/prospects/${encodeURIComponent(a.body.id)}`, { key: reader })).body.refusals.length, { timeout: 15_000 }).toBe(1);
    await handle.signal(approveSignal, issued.body.signal.input);
    expect(await handle.result()).toMatchObject({ stage: 'APPROVED', decision: { by: 'ana@prospector.example', signed: true } });
    const detail = (await api.call('GET', `/v1/prospects/${encodeURIComponent(a.body.id)}`, { key: reader })).body;
    expect(detail.refusals[0]).toMatchObject({ by: 'lee@prospector.example', reason: expect.stringMatching(/issued to ana@prospector\.example, not lee@prospector\.example/) });
  });

  it('the approver registry: admin adds, limits and removes approvers; a removed approver\'s key can no longer decide', async () => {
    const identity = 'zoe@prospector.example';
    const key = await api.key(['approvals:write'], identity);
    expect((await api.call('PUT', `/v1/approvers/${identity}`, { key: approver, body: {} })).status).toBe(403);
    expect((await api.call('PUT', '/v1/approvers/not-an-email', { key: admin, body: {} })).status).toBe(400);
    expect((await api.call('PUT', `/v1/approvers/${identity}`, { key: admin, body: { actions: ['approve', 'delete'] } })).status).toBe(400);
    const added = await api.call('PUT', `/v1/approvers/${identity.toUpperCase()}`, { key: admin, body: { name: 'Zoe', actions: ['reject'], domains: ['elsewhere.example'] } });
    expect(added).toMatchObject({ status: 201, body: { identity, actions: ['reject'], domains: ['elsewhere.example'], owners: null } });
    expect((await api.call('GET', '/v1/approvers', { key: admin })).body.items.map((x: { identity: string }) => x.identity)).toContain(identity);

    const lead = uniqueLead();
    const p = await submit(lead);
    await awaiting(p.body.id);
    const act = (action: string, body: unknown) => api.call('POST', `/v1/prospects/${encodeURIComponent(p.body.id)}/${action}`, { key, body });
    expect((await act('approve', { version: 1 })).body.detail).toMatch(/may not approve drafts \(allowed: reject\)/);
    expect((await act('reject', { reason: 'no' })).body.detail).toMatch(new RegExp(`may not decide for ${lead.email.split('@')[1]!.replace(/\./g, '\\.')}'s domain`));
    await api.call('PUT', `/v1/approvers/${identity}`, { key: admin, body: { actions: ['reject'] } });
    expect((await act('reject', { reason: 'no' })).status).toBe(202);
    expect((await temporal.client.workflow.getHandle(p.body.id).result()).decision).toMatchObject({ outcome: 'rejected', by: identity });

    expect((await api.call('DELETE', `/v1/approvers/${identity}`, { key: admin })).status).toBe(204);
    expect((await api.call('DELETE', `/v1/approvers/${identity}`, { key: admin })).status).toBe(404);
    const q = await submit(uniqueLead());
    await awaiting(q.body.id);
    expect((await api.call('POST', `/v1/prospects/${encodeURIComponent(q.body.id)}/reject`, { key, body: { reason: 'no' } })).status).toBe(403);
    const audit = await db.pool.query(`SELECT action FROM audit_events WHERE kind = 'approver' AND details->>'identity' = $1 ORDER BY id`, [identity]);
    expect(audit.rows.map((r) => r.action)).toEqual(['add', 'update', 'remove']);
  });

  it('suppressions and the screening policy: admin to change, readers to look; a paused or suppressed lead ends SKIPPED', async () => {
    const pattern = `*@${uniqueLead().email.split('@')[1]}`;
    expect((await api.call('POST', '/v1/suppressions', { key: approver, body: { pattern } })).status).toBe(403);
    expect((await api.call('POST', '/v1/suppressions', { key: admin, body: { pattern: '*@' } })).body.errors[0].field).toBe('body.pattern');
    const added = await api.call('POST', '/v1/suppressions', { key: admin, body: { pattern: pattern.toUpperCase(), reason: 'competitor' } });
    expect(added).toMatchObject({ status: 201, body: { pattern, kind: 'domain', reason: 'competitor' } });
    expect((await api.call('POST', '/v1/suppressions', { key: admin, body: { pattern } })).status).toBe(200);
    const list = await api.call('GET', '/v1/suppressions', { key: reader });
    expect(list.body.items.map((s: { pattern: string }) => s.pattern)).toContain(pattern);

    const blocked = await submit({ email: `someone${pattern.slice(1)}` });
    const skipped = await waitForStage(temporal.client, blocked.body.id, ['SKIPPED']);
    expect(skipped.reason).toMatch(/^suppressed: matches suppression \*@newco-/);

    expect((await api.call('DELETE', `/v1/suppressions/${encodeURIComponent(pattern)}`, { key: admin })).status).toBe(204);
    expect((await api.call('DELETE', `/v1/suppressions/${encodeURIComponent(pattern)}`, { key: admin })).status).toBe(404);

    expect((await api.call('PATCH', '/v1/screening', { key: admin, body: { senderTimeZone: 'Nowhere/Else' } })).body.errors[0].field).toBe('body.senderTimeZone');
    const paused = await api.call('PATCH', '/v1/screening', { key: admin, body: { paused: true, pausedReason: 'holiday' } });
    expect(paused).toMatchObject({ status: 200, body: { paused: true, pausedReason: 'holiday', recontactWindowDays: 14, updatedBy: 'api-key:test admin' } });
    try {
      const lead = await submit(uniqueLead());
      expect((await waitForStage(temporal.client, lead.body.id, ['SKIPPED'])).reason).toBe('paused: intake is paused (holiday)');
      const row = (await api.call('GET', `/v1/prospects/${encodeURIComponent(lead.body.id)}`, { key: reader })).body;
      expect(row).toMatchObject({ stage: 'SKIPPED', reason: 'paused: intake is paused (holiday)' });
    } finally {
      await api.call('PATCH', '/v1/screening', { key: admin, body: { paused: false, pausedReason: null } });
    }
    expect((await api.call('GET', '/v1/screening', { key: reader })).body.paused).toBe(false);
  });

  it("the sender's product description: admin sets it (at most 1000 characters), readers see it, an empty one clears it", async () => {
    expect((await api.call('GET', '/v1/screening', { key: reader })).body.senderPitch).toBeNull();
    expect((await api.call('PATCH', '/v1/screening', { key: reader, body: { senderPitch: 'x' } })).status).toBe(403);
    const tooLong = await api.call('PATCH', '/v1/screening', { key: admin, body: { senderPitch: 'y'.repeat(1001) } });
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.errors[0]).toMatchObject({ field: 'body.senderPitch' });
    const set = await api.call('PATCH', '/v1/screening', { key: admin, body: { senderPitch: '  Prospector drafts grounded first emails.  ' } });
    expect(set).toMatchObject({ status: 200, body: { senderPitch: 'Prospector drafts grounded first emails.' } });
    expect((await api.call('GET', '/v1/screening', { key: reader })).body.senderPitch).toBe('Prospector drafts grounded first emails.');
    expect((await api.call('PATCH', '/v1/screening', { key: admin, body: { senderPitch: '' } })).body.senderPitch).toBeNull();
  });

  it('every response matched the OpenAPI document', () => {
    expect(api.violations).toEqual([]);
  });
});
