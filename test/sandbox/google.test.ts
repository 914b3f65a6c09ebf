import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import MailComposer from 'nodemailer/lib/mail-composer';
import { loadConfig } from '../../lib/config/config.js';
import type { Sandbox } from '../../sandbox/server.js';
import type { SandboxClient } from '../../sandbox/client.js';
import {
  createCalendar,
  createGmail,
  createGoogleAuth,
  createGoogleClients,
  googleApiError,
  type Calendar,
  type Gmail,
  type GoogleConfig,
  type OAuth2Client,
} from '../../activities/providers/google.js';
import { testSandbox } from '../helpers/stack.js';

/**
 * The Google stand-in driven by the real googleapis SDK (Gmail v1, Calendar v3)
 * through the activities' client factory: OAuth refresh, search, threads,
 * the draft lifecycle, sending, free/busy, events and injected faults.
 */

const ME = 'sales@prospector.example';
const DANA_QUERY = 'from:dana@acme.example OR to:dana@acme.example';

let sandbox: Sandbox;
let client: SandboxClient;
let cfg: GoogleConfig;
let auth: OAuth2Client;
let gmail: Gmail;
let calendar: Calendar;

beforeAll(async () => {
  ({ sandbox, client } = await testSandbox());
  cfg = (await loadConfig({ env: {}, overrides: { SANDBOX_URL: sandbox.url } })).providers.google;
  ({ auth, gmail, calendar } = createGoogleClients(cfg, { timeoutMs: 5_000 }));
});
afterAll(() => sandbox?.close());
beforeEach(() => client.reset('google'));

async function rfc822(options: ConstructorParameters<typeof MailComposer>[0]): Promise<string> {
  const raw = await new MailComposer(options).compile().build();
  return raw.toString('base64url');
}

/** The rejection of a googleapis call (fails the test if it resolves). */
async function rejection(call: Promise<unknown>): Promise<any> {
  try {
    await call;
  } catch (err) {
    return err;
  }
  throw new Error('expected the call to fail');
}

const decodePart = (data: string | null | undefined) => Buffer.from(data ?? '', 'base64url').toString('utf8');
const header = (headers: { name?: string | null; value?: string | null }[] | undefined, name: string) =>
  headers?.find((h) => h.name?.toLowerCase() === name.toLowerCase())?.value;

async function activeThreadId(): Promise<string> {
  const { data } = await gmail.users.threads.list({ userId: 'me', q: DANA_QUERY });
  return data.threads![0]!.id!;
}

async function replyToDana(intake: string, text: string, subject = 'Re: Acme × Prospector: faster lead follow-up') {
  return rfc822({
    from: `Alex Morgan <${ME}>`,
    to: 'Dana Ruiz <dana@acme.example>',
    subject,
    text,
    messageId: `<${intake}@prospector.example>`,
    inReplyTo: '<CAK7acme-4@mail.acme.example>',
    references: ['<seed-acme-1@prospector.example>', '<CAK7acme-4@mail.acme.example>'],
    headers: { 'X-Prospector-Intake': intake },
  });
}

describe('Google OAuth', () => {
  it('refreshes the access token at the configured token URL, once', async () => {
    const fresh = createGoogleAuth(cfg);
    const freshGmail = createGmail(cfg, { auth: fresh });
    expect((await client.state('google')).oauth.grants).toBe(0);

    await freshGmail.users.threads.list({ userId: 'me', maxResults: 1 });
    await freshGmail.users.messages.list({ userId: 'me', maxResults: 1 });

    const stats = await client.stats();
    expect(stats.providers.google!.routes['POST /token']).toBe(1);
    expect((await client.state('google')).oauth.grants).toBe(1);
    expect(fresh.credentials.access_token).toMatch(/^ya29\./);
    expect(fresh.credentials.expiry_date).toBeGreaterThan(Date.now() + 3_500_000);
  });

  it('answers a revoked refresh token with invalid_grant, and a missing bearer with Google 401', async () => {
    const revoked = createGmail({ ...cfg, refreshToken: 'revoked-refresh-token' });
    const err = await rejection(revoked.users.threads.list({ userId: 'me' }));
    expect(err.status).toBe(400);
    expect(err.response.data).toMatchObject({ error: 'invalid_grant' });

    const res = await fetch(`${sandbox.url}/gmail/v1/users/me/threads`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toContain('Bearer');
    expect(await res.json()).toMatchObject({ error: { code: 401, status: 'UNAUTHENTICATED', errors: [{ domain: 'global', reason: 'required' }] } });
  });
});

describe('Gmail threads and search', () => {
  it('finds the active thread with a prospect by from:/to:, and nothing for a new prospect', async () => {
    const { data } = await gmail.users.threads.list({ userId: 'me', q: DANA_QUERY });
    expect(data.threads).toHaveLength(1);
    expect(data.resultSizeEstimate).toBe(1);
    expect(data.threads![0]!.snippet).toContain('Looping in Jordan');

    // A bare address also matches the internal note that names Dana in its body.
    const bare = await gmail.users.threads.list({ userId: 'me', q: 'dana@acme.example' });
    expect(bare.data.threads).toHaveLength(2);
    expect(bare.data.threads!.map((t) => t.id)).toContain(data.threads![0]!.id);

    const recent = await gmail.users.threads.list({ userId: 'me', q: `{from:dana@acme.example to:dana@acme.example} newer_than:7d` });
    expect(recent.data.threads?.map((t) => t.id)).toEqual([data.threads![0]!.id]);

    const old = await gmail.users.threads.list({ userId: 'me', q: 'from:lee@globex.example OR to:lee@globex.example' });
    expect(old.data.threads).toHaveLength(1);
    const oldRecent = await gmail.users.threads.list({ userId: 'me', q: '(from:lee@globex.example OR to:lee@globex.example) newer_than:30d' });
    expect(oldRecent.data).toEqual({ resultSizeEstimate: 0 });

    const none = await gmail.users.threads.list({ userId: 'me', q: 'from:priya@initech.example OR to:priya@initech.example' });
    expect(none.data.threads).toBeUndefined();
    expect(none.data.resultSizeEstimate).toBe(0);
  });

  it('pages threads.list with maxResults and pageToken', async () => {
    const first = await gmail.users.threads.list({ userId: 'me', maxResults: 3 });
    expect(first.data.threads).toHaveLength(3);
    expect(first.data.nextPageToken).toBeTruthy();
    const second = await gmail.users.threads.list({ userId: 'me', maxResults: 3, pageToken: first.data.nextPageToken! });
    expect(second.data.threads).toHaveLength(1);
    expect(second.data.nextPageToken).toBeUndefined();
    const ids = [...first.data.threads!, ...second.data.threads!].map((t) => t.id);
    expect(new Set(ids).size).toBe(4);
  });

  it('threads.get returns the messages oldest first with decoded headers and body', async () => {
    const { data } = await gmail.users.threads.get({ userId: 'me', id: await activeThreadId() });
    expect(data.messages).toHaveLength(4);
    const last = data.messages!.at(-1)!;
    const headers = last.payload!.headers!;
    expect(header(headers, 'From')).toBe('Dana Ruiz <dana@acme.example>');
    expect(header(headers, 'Cc')).toBe('Jordan Lee <jordan@acme.example>');
    expect(header(headers, 'Subject')).toBe('Re: Acme × Prospector: faster lead follow-up'); // RFC 2047 decoded
    expect(header(headers, 'In-Reply-To')).toBe('<seed-acme-3@prospector.example>');
    expect(last.labelIds).toEqual(expect.arrayContaining(['INBOX', 'UNREAD']));
    const ageDays = (Date.now() - Number(last.internalDate)) / 86_400_000;
    expect(ageDays).toBeGreaterThan(2.9);
    expect(ageDays).toBeLessThan(3.1);
    expect(last.payload!.mimeType).toBe('multipart/alternative');
    const plain = last.payload!.parts!.find((p) => p.mimeType === 'text/plain')!;
    expect(decodePart(plain.body!.data)).toContain('Looping in Jordan, who runs sales ops.');
    expect(data.messages!.map((m) => Number(m.internalDate))).toEqual([...data.messages!.map((m) => Number(m.internalDate))].sort());

    const meta = await gmail.users.threads.get({ userId: 'me', id: data.id!, format: 'metadata', metadataHeaders: ['Subject', 'From'] });
    const metaHeaders = meta.data.messages![0]!.payload!.headers!;
    expect(metaHeaders.map((h) => h.name).sort()).toEqual(['From', 'Subject']);
    expect(meta.data.messages![0]!.payload!.parts).toBeUndefined();

    const missing = await rejection(gmail.users.threads.get({ userId: 'me', id: '18a3c2d4ffffffff' }));
    expect(missing.status).toBe(404);
    expect(googleApiError(missing)).toMatchObject({ status: 404, reason: 'notFound' });
  });
});

describe('Gmail drafts', () => {
  it('creates a reply draft in the thread, found again by id and by rfc822msgid', async () => {
    const threadId = await activeThreadId();
    const raw = await replyToDana('intake-123', 'Hi Dana,\n\nTuesday 2pm works. Grüße from the team.\n\nAlex');
    const created = await gmail.users.drafts.create({ userId: 'me', requestBody: { message: { raw, threadId } } });
    expect(created.data.id).toMatch(/^r-\d+$/);
    expect(created.data.message).toMatchObject({ threadId, labelIds: ['DRAFT'] });
    expect(created.data.message!.id).toMatch(/^[0-9a-f]{16}$/);

    const got = await gmail.users.drafts.get({ userId: 'me', id: created.data.id! });
    expect(got.data.message!.threadId).toBe(threadId);
    expect(header(got.data.message!.payload!.headers!, 'X-Prospector-Intake')).toBe('intake-123');
    expect(decodePart(got.data.message!.payload!.body!.data)).toContain('Grüße from the team'); // quoted-printable decoded

    const listed = await gmail.users.drafts.list({ userId: 'me', q: 'rfc822msgid:<intake-123@prospector.example>' });
    expect(listed.data.drafts).toEqual([{ id: created.data.id, message: { id: created.data.message!.id, threadId } }]);
    const other = await gmail.users.drafts.list({ userId: 'me', q: 'rfc822msgid:intake-999@prospector.example' });
    expect(other.data.drafts).toBeUndefined();

    const thread = await gmail.users.threads.get({ userId: 'me', id: threadId, format: 'minimal' });
    expect(thread.data.messages).toHaveLength(5);
    expect(thread.data.messages!.at(-1)!.labelIds).toEqual(['DRAFT']);
  });

  it('drafts.update replaces the content under the same draft id', async () => {
    const threadId = await activeThreadId();
    const created = await gmail.users.drafts.create({
      userId: 'me',
      requestBody: { message: { raw: await replyToDana('intake-200', 'First version'), threadId } },
    });
    const updated = await gmail.users.drafts.update({
      userId: 'me',
      id: created.data.id!,
      requestBody: { message: { raw: await replyToDana('intake-200', 'Second version, edited by Alex', 'Re: pricing for 50 seats'), threadId } },
    });
    expect(updated.data.id).toBe(created.data.id);
    expect(updated.data.message!.id).not.toBe(created.data.message!.id);
    expect(updated.data.message!.threadId).toBe(threadId);

    const drafts = await client.get('/_sandbox/google/drafts');
    expect(drafts).toHaveLength(1);
    expect(drafts[0]).toMatchObject({ id: created.data.id, subject: 'Re: pricing for 50 seats', threadId });
    expect(drafts[0].body).toContain('Second version, edited by Alex');
    expect((await rejection(gmail.users.messages.get({ userId: 'me', id: created.data.message!.id! }))).status).toBe(404);
  });

  it('drafts.send turns the draft into a SENT message in the same thread; the draft is gone', async () => {
    const threadId = await activeThreadId();
    const created = await gmail.users.drafts.create({
      userId: 'me',
      requestBody: { message: { raw: await replyToDana('intake-300', 'Sending this one'), threadId } },
    });
    const sent = await gmail.users.drafts.send({ userId: 'me', requestBody: { id: created.data.id! } });
    expect(sent.data).toMatchObject({ id: created.data.message!.id, threadId, labelIds: ['SENT'] });

    expect((await rejection(gmail.users.drafts.get({ userId: 'me', id: created.data.id! }))).status).toBe(404);
    const again = await rejection(gmail.users.drafts.send({ userId: 'me', requestBody: { id: created.data.id! } }));
    expect(again.status).toBe(404);
    expect(googleApiError(again)?.reason).toBe('notFound');

    const sentList = await client.get('/_sandbox/google/sent');
    const mine = sentList.find((m: any) => m.id === sent.data.id);
    expect(mine).toMatchObject({ threadId, to: 'Dana Ruiz <dana@acme.example>', subject: 'Re: Acme × Prospector: faster lead follow-up' });
    expect(mine.headers['x-prospector-intake']).toBe('intake-300');
    expect(await client.get('/_sandbox/google/drafts')).toEqual([]);

    const found = await gmail.users.messages.list({ userId: 'me', q: 'in:sent rfc822msgid:<intake-300@prospector.example>' });
    expect(found.data.messages).toEqual([{ id: sent.data.id, threadId }]);
    const thread = await gmail.users.threads.get({ userId: 'me', id: threadId, format: 'minimal' });
    expect(thread.data.messages!.at(-1)!.labelIds).toEqual(['SENT']);
  });

  it('drafts.delete removes the draft and its message', async () => {
    const created = await gmail.users.drafts.create({
      userId: 'me',
      requestBody: { message: { raw: await rfc822({ from: ME, to: 'priya@initech.example', subject: 'Hello', text: 'Hi Priya' }) } },
    });
    const res = await gmail.users.drafts.delete({ userId: 'me', id: created.data.id! });
    expect(res.status).toBe(204);
    expect((await rejection(gmail.users.drafts.get({ userId: 'me', id: created.data.id! }))).status).toBe(404);
    expect((await rejection(gmail.users.messages.get({ userId: 'me', id: created.data.message!.id! }))).status).toBe(404);
    expect(await client.get('/_sandbox/google/drafts')).toEqual([]);
  });

  it('rejects a draft without message.raw or with undecodable raw, naming the problem', async () => {
    const missing = await rejection(gmail.users.drafts.create({ userId: 'me', requestBody: { message: {} } }));
    expect(missing.status).toBe(400);
    expect(missing.message).toContain("'raw'");
    expect(googleApiError(missing)).toMatchObject({ status: 400, reason: 'invalidArgument' });

    const garbled = await rejection(gmail.users.drafts.create({ userId: 'me', requestBody: { message: { raw: '%%% not base64 %%%' } } }));
    expect(garbled.status).toBe(400);
    expect(garbled.message).toMatch(/Base64 decoding failed/);

    const noThread = await rejection(
      gmail.users.drafts.create({ userId: 'me', requestBody: { message: { raw: await replyToDana('intake-x', 'x'), threadId: '18a3c2d4ffffffff' } } }),
    );
    expect(noThread.status).toBe(404);
  });
});

describe('Gmail messages.send', () => {
  it('sends a new message into a new thread, filling Message-ID and Date', async () => {
    const raw = await rfc822({ from: ME, to: 'Priya Nair <priya@initech.example>', subject: 'Intro', text: 'Hi Priya' });
    const rawWithoutId = Buffer.from(
      Buffer.from(raw, 'base64url')
        .toString('utf8')
        .replace(/^(Message-ID|Date):.*\r\n/gim, ''),
    ).toString('base64url');
    const { data } = await gmail.users.messages.send({ userId: 'me', requestBody: { raw: rawWithoutId } });
    expect(data.labelIds).toEqual(['SENT']);
    expect(data.threadId).toBe(data.id); // a new thread is named after its first message

    const sent = (await client.get('/_sandbox/google/sent')).find((m: any) => m.id === data.id);
    expect(sent).toMatchObject({ to: 'Priya Nair <priya@initech.example>', subject: 'Intro', body: 'Hi Priya' });
    expect(sent.rfc822MessageId).toMatch(/^<.+@mail\.gmail\.com>$/);
    expect(sent.headers.date).toBeTruthy();
  });

  it('threads a reply by In-Reply-To when no threadId is given, also via media upload', async () => {
    const threadId = await activeThreadId();
    const { data } = await gmail.users.messages.send({ userId: 'me', requestBody: { raw: await replyToDana('intake-400', 'Quick follow-up') } });
    expect(data.threadId).toBe(threadId);

    const raw = Buffer.from(await replyToDana('intake-401', 'Uploaded as media'), 'base64url').toString('utf8');
    // googleapis rewrites `url` for the client-level rootUrl but not the upload URL:
    // media uploads need rootUrl on the call itself.
    const uploaded = await gmail.users.messages.send(
      { userId: 'me', requestBody: { threadId }, media: { mimeType: 'message/rfc822', body: raw } },
      { rootUrl: cfg.baseUrl },
    );
    expect(uploaded.data.threadId).toBe(threadId);
    const msg = await gmail.users.messages.get({ userId: 'me', id: uploaded.data.id!, format: 'metadata', metadataHeaders: ['X-Prospector-Intake'] });
    expect(msg.data.payload!.headers).toEqual([{ name: 'X-Prospector-Intake', value: 'intake-401' }]);

    const noRecipient = await rejection(
      gmail.users.messages.send({ userId: 'me', requestBody: { raw: await rfc822({ from: ME, subject: 'x', text: 'x' }) } }),
    );
    expect(noRecipient.status).toBe(400);
    expect(noRecipient.message).toBe('Recipient address required');
  });
});

describe('Calendar', () => {
  const window = () => ({ timeMin: new Date().toISOString(), timeMax: new Date(Date.now() + 10 * 86_400_000).toISOString() });

  it('freeBusy expands the weekly pattern inside the window; events.insert adds a busy block', async () => {
    const range = window();
    const { data } = await calendar.freebusy.query({
      requestBody: { ...range, timeZone: 'America/New_York', items: [{ id: ME }, { id: 'nobody@prospector.example' }] },
    });
    expect(data.kind).toBe('calendar#freeBusy');
    expect(data.calendars!['nobody@prospector.example']).toEqual({ errors: [{ domain: 'global', reason: 'notFound' }], busy: [] });
    const busy = data.calendars![ME]!.busy!;
    expect(busy.length).toBeGreaterThan(10);
    for (const b of busy) {
      expect(Date.parse(b.start!)).toBeGreaterThanOrEqual(Date.parse(range.timeMin) - 1000);
      expect(Date.parse(b.end!)).toBeLessThanOrEqual(Date.parse(range.timeMax));
      expect(Date.parse(b.end!)).toBeGreaterThan(Date.parse(b.start!));
    }
    const standups = busy.filter((b) => /T09:00:00-0[45]:00$/.test(b.start!) && /T10:00:00-0[45]:00$/.test(b.end!));
    expect(standups.length).toBeGreaterThanOrEqual(5); // every weekday, 09:00-10:00 New York
    for (const s of standups) expect([1, 2, 3, 4, 5]).toContain(new Date(s.start!).getUTCDay());

    // Book 10:00-10:30 right after the last standup in the window: the busy block grows to 10:30.
    const last = standups.at(-1)!;
    const startMs = Date.parse(last.end!);
    const inserted = await calendar.events.insert({
      calendarId: 'primary',
      requestBody: {
        summary: 'Intro call: Acme',
        start: { dateTime: new Date(startMs).toISOString() },
        end: { dateTime: new Date(startMs + 30 * 60_000).toISOString() },
        attendees: [{ email: 'dana@acme.example' }],
      },
    });
    expect(inserted.data).toMatchObject({ status: 'confirmed', summary: 'Intro call: Acme', attendees: [{ email: 'dana@acme.example', responseStatus: 'needsAction' }] });
    expect(inserted.data.id).toMatch(/^[a-v0-9]{5,}$/);
    expect(inserted.data.htmlLink).toMatch(/^https:\/\/www\.google\.com\/calendar\/event\?eid=/);
    expect(inserted.data.start!.dateTime).toBe(last.end); // echoed in the calendar's zone

    const after = await calendar.freebusy.query({ requestBody: { ...range, timeZone: 'America/New_York', items: [{ id: ME }] } });
    const grown = after.data.calendars![ME]!.busy!.find((b) => b.start === last.start)!;
    expect(Date.parse(grown.end!) - Date.parse(grown.start!)).toBe(90 * 60_000);

    const got = await calendar.events.get({ calendarId: ME, eventId: inserted.data.id! });
    expect(got.data.id).toBe(inserted.data.id);
    expect(await client.get('/_sandbox/google/events')).toHaveLength(1);
  });

  it('honours a client-chosen event id and refuses it twice (409)', async () => {
    const requestBody = {
      id: 'intake0123abc',
      summary: 'Hold',
      start: { dateTime: '2031-03-04T15:00:00', timeZone: 'America/New_York' },
      end: { dateTime: '2031-03-04T15:30:00', timeZone: 'America/New_York' },
    };
    const first = await calendar.events.insert({ calendarId: 'primary', requestBody });
    expect(first.data).toMatchObject({ id: 'intake0123abc', start: { dateTime: '2031-03-04T15:00:00-05:00', timeZone: 'America/New_York' } });
    const second = await rejection(calendar.events.insert({ calendarId: 'primary', requestBody }));
    expect(second.status).toBe(409);
    expect(googleApiError(second)?.reason).toBe('duplicate');
  });

  it('adds busy blocks through the control plane', async () => {
    // Tuesday 4 March 2031, New York on EST (UTC-5): lunch 13:00-14:00 is 18:00-19:00Z.
    await client.post('/_sandbox/google/busy', { blocks: [{ start: '2031-03-04T16:00:00Z', end: '2031-03-04T17:00:00Z', summary: 'Offsite' }] });
    const { data } = await calendar.freebusy.query({
      requestBody: { timeMin: '2031-03-04T15:30:00Z', timeMax: '2031-03-04T18:30:00Z', items: [{ id: 'primary' }] },
    });
    expect(data.calendars!.primary!.busy).toEqual([
      { start: '2031-03-04T16:00:00Z', end: '2031-03-04T17:00:00Z' },
      { start: '2031-03-04T18:00:00Z', end: '2031-03-04T18:30:00Z' }, // lunch, clipped to the window
    ]);
  });
});

describe('Google faults', () => {
  it('an injected 429 surfaces as a GaxiosError with status 429, the Google reason and Retry-After', async () => {
    await auth.getAccessToken(); // so the fault lands on the API call, not on the token refresh
    await client.addFaults({ provider: 'google', kind: 'rate_limit', count: 1, retryAfterSeconds: 7 });
    const err = await rejection(gmail.users.threads.list({ userId: 'me', q: DANA_QUERY }));
    expect(err.constructor.name).toBe('GaxiosError');
    expect(err.status).toBe(429);
    expect(err.response.data.error).toMatchObject({
      code: 429,
      status: 'RESOURCE_EXHAUSTED',
      errors: [{ reason: 'rateLimitExceeded', domain: 'usageLimits' }],
    });
    expect(googleApiError(err)).toMatchObject({ status: 429, reason: 'rateLimitExceeded', retryAfterSeconds: 7 });
    // No SDK retry: the next call is the first to succeed.
    expect((await gmail.users.threads.list({ userId: 'me', q: DANA_QUERY })).data.threads).toHaveLength(1);
    const stats = (await client.stats()).providers.google!;
    expect(stats.statuses).toEqual({ '429': 1, '200': 1 });
  });

  it('injected 500 and 503 surface with their code and Google status; retries are opt-in', async () => {
    await auth.getAccessToken();
    await client.addFaults({ provider: 'google', kind: 'error', status: 503, count: 1, match: '/calendar/v3/freeBusy' });
    const unavailable = await rejection(calendar.freebusy.query({ requestBody: { ...windowNow(), items: [{ id: 'primary' }] } }));
    expect(unavailable.status).toBe(503);
    expect(unavailable.response.data.error).toMatchObject({ code: 503, status: 'UNAVAILABLE', errors: [{ reason: 'backendError' }] });

    await client.addFaults({ provider: 'google', kind: 'error', status: 500, count: 1, match: 'GET /gmail/v1/users/me/drafts' });
    const internal = await rejection(gmail.users.drafts.list({ userId: 'me' }));
    expect(internal.status).toBe(500);
    expect(googleApiError(internal)).toMatchObject({ status: 500, reason: 'backendError' });
    expect(internal.response.data.error.status).toBe('INTERNAL');

    // With retries configured, gaxios retries the idempotent GET past one 503.
    const retrying = createGmail(cfg, { auth, retries: 2 });
    await client.addFaults({ provider: 'google', kind: 'error', status: 503, count: 1, match: 'GET /gmail/v1/users/me/threads' });
    expect((await retrying.users.threads.list({ userId: 'me', q: DANA_QUERY })).data.threads).toHaveLength(1);
    expect((await client.stats()).injected.google).toMatchObject({ error: 3 });
  });

  it('a hung request ends at the configured timeout', async () => {
    const quick = createCalendar(cfg, { auth, timeoutMs: 300 });
    await auth.getAccessToken();
    await client.addFaults({ provider: 'google', kind: 'timeout', delayMs: 3_000, count: 1 });
    const started = Date.now();
    const err = await rejection(quick.freebusy.query({ requestBody: { ...windowNow(), items: [{ id: 'primary' }] } }));
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(googleApiError(err)?.status).toBeUndefined();
    expect(googleApiError(err)?.code).toBeTruthy();
  });

  it('apply_then_fail on drafts.create leaves the draft in Gmail although the SDK threw', async () => {
    await auth.getAccessToken();
    await client.addFaults({ provider: 'google', kind: 'apply_then_fail', count: 1, match: 'POST /gmail/v1/users/me/drafts' });
    const err = await rejection(
      gmail.users.drafts.create({ userId: 'me', requestBody: { message: { raw: await replyToDana('intake-500', 'Applied, then failed') } } }),
    );
    expect(err.status).toBe(500);
    const drafts = await client.get('/_sandbox/google/drafts');
    expect(drafts).toHaveLength(1);
    expect(drafts[0].headers['x-prospector-intake']).toBe('intake-500');
    // What a retry would check first: the draft is findable by its Message-ID.
    const found = await gmail.users.drafts.list({ userId: 'me', q: 'rfc822msgid:<intake-500@prospector.example>' });
    expect(found.data.drafts?.map((d) => d.id)).toEqual([drafts[0].id]);
  });
});

function windowNow() {
  return { timeMin: new Date().toISOString(), timeMax: new Date(Date.now() + 2 * 86_400_000).toISOString() };
}
