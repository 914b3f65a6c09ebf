import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, type WebClient } from '@slack/web-api';
import { ErrorCode as WebhookErrorCode } from '@slack/webhook';
import { createSlack, createSlackWebhook } from '../../activities/providers/slack.js';
import { loadConfig, type Config } from '../../lib/config/config.js';
import type { SandboxClient } from '../../sandbox/client.js';
import type { Sandbox } from '../../sandbox/server.js';
import { testSandbox } from '../helpers/stack.js';

/** The real @slack/web-api and @slack/webhook SDKs against the sandbox's Slack. */

interface RecordedMessage {
  channel: string;
  channel_name?: string;
  ts: string;
  text: string;
  blocks?: unknown[];
  metadata?: { event_type: string; event_payload: Record<string, unknown> };
  source: string;
  history: { text: string }[];
}

describe('sandbox: Slack', () => {
  let sandbox: Sandbox;
  let control: SandboxClient;
  let cfg: Config['providers']['slack'];
  let slack: WebClient;

  beforeAll(async () => {
    ({ sandbox, client: control } = await testSandbox());
    cfg = (await loadConfig({ env: {}, overrides: { SANDBOX_URL: sandbox.url } })).providers.slack;
    slack = createSlack(cfg);
  });
  afterAll(() => sandbox?.close());
  beforeEach(async () => {
    await control.reset('slack');
    await control.clearFaults('slack');
  });

  const recorded = async (channel?: string) =>
    (await control.get<{ messages: RecordedMessage[] }>(`/_sandbox/slack/messages${channel ? `?channel=${channel}` : ''}`)).messages;

  it('posts with metadata and finds it again through conversations.history', async () => {
    const metadata = { event_type: 'prospector_draft', event_payload: { draft_id: 'd-42', prospect: 'ada@example.com' } };
    const posted = await slack.chat.postMessage({
      channel: '#prospector',
      text: 'Draft ready for Ada',
      blocks: [{ type: 'section', text: { type: 'mrkdwn', text: '*Draft ready* for Ada' } }],
      metadata,
    });
    expect(posted.ok).toBe(true);
    expect(posted.channel).toBe('C0PROSPECT');
    expect(posted.ts).toMatch(/^\d+\.\d{6}$/);

    const second = await slack.chat.postMessage({ channel: 'C0PROSPECT', text: 'Another one' });
    expect(Number(second.ts)).toBeGreaterThan(Number(posted.ts));

    const history = await slack.conversations.history({ channel: 'C0PROSPECT', include_all_metadata: true });
    expect(history.messages?.map((m) => m.ts)).toEqual([second.ts, posted.ts]); // newest first
    const found = history.messages?.find((m) => m.metadata?.event_type === 'prospector_draft');
    expect(found?.ts).toBe(posted.ts);
    expect(found?.metadata?.event_payload).toEqual(metadata.event_payload);
    expect(found?.blocks?.[0]?.type).toBe('section');

    const plain = await slack.conversations.history({ channel: 'C0PROSPECT' });
    expect(plain.messages?.every((m) => m.metadata === undefined)).toBe(true);
  });

  it('pages conversations.history with cursors, newest first, without repeats', async () => {
    const sent: string[] = [];
    for (let i = 0; i < 5; i++) sent.push((await slack.chat.postMessage({ channel: '#signals', text: `digest ${i}` })).ts!);
    const seen: string[] = [];
    for await (const page of slack.paginate('conversations.history', { channel: 'C0SIGNALS1', limit: 2 })) {
      seen.push(...(((page as { messages?: { ts: string }[] }).messages) ?? []).map((m) => m.ts));
    }
    expect(seen).toEqual([...sent].reverse());
  });

  it('chat.update changes the message and the sandbox keeps the earlier version', async () => {
    const posted = await slack.chat.postMessage({ channel: '#prospector', text: 'Draft awaiting approval' });
    const updated = await slack.chat.update({ channel: posted.channel!, ts: posted.ts!, text: 'Approved by Sam' });
    expect(updated.ok).toBe(true);
    expect(updated.ts).toBe(posted.ts);

    const [message] = (await recorded('prospector')).filter((m) => m.ts === posted.ts);
    expect(message?.text).toBe('Approved by Sam');
    expect(message?.history.map((h) => h.text)).toEqual(['Draft awaiting approval']);

    const history = await slack.conversations.history({ channel: 'C0PROSPECT' });
    expect(history.messages?.[0]).toMatchObject({ ts: posted.ts, text: 'Approved by Sam', edited: { user: 'U0PROSPBOT' } });
  });

  it('reports Slack API errors as platform errors', async () => {
    await expect(slack.chat.postMessage({ channel: '#nope', text: 'hi' })).rejects.toMatchObject({
      code: ErrorCode.PlatformError,
      data: { ok: false, error: 'channel_not_found' },
    });
    await expect(slack.chat.update({ channel: 'C0PROSPECT', ts: '1.000001', text: 'x' })).rejects.toMatchObject({
      code: ErrorCode.PlatformError,
      data: { error: 'message_not_found' },
    });
    await expect(createSlack({ ...cfg, botToken: '' }).auth.test()).rejects.toMatchObject({ data: { error: 'not_authed' } });
    await expect(createSlack({ ...cfg, botToken: 'xoxb-revoked' }).auth.test()).rejects.toMatchObject({ data: { error: 'invalid_auth' } });
    expect(await recorded('prospector')).toEqual([]);
  });

  it('surfaces an injected 429 as a rate-limited error with retryAfter, without posting', async () => {
    await control.addFaults({ provider: 'slack', kind: 'rate_limit', match: 'chat.postMessage', retryAfterSeconds: 17, count: 1 });
    const err = await slack.chat.postMessage({ channel: '#prospector', text: 'hi' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.RateLimitedError, retryAfter: 17 });
    expect(await recorded('prospector')).toEqual([]);
    // The rule is spent: the next call goes through.
    await expect(slack.chat.postMessage({ channel: '#prospector', text: 'hi' })).resolves.toMatchObject({ ok: true });
  });

  it('surfaces injected 5xx as HTTP errors; apply_then_fail still records the post', async () => {
    await control.addFaults({ provider: 'slack', kind: 'error', status: 500, match: 'chat.postMessage', count: 1 });
    await expect(slack.chat.postMessage({ channel: '#prospector', text: 'lost' })).rejects.toMatchObject({
      code: ErrorCode.HTTPError,
      statusCode: 500,
    });
    expect(await recorded('prospector')).toEqual([]);

    await control.addFaults({ provider: 'slack', kind: 'apply_then_fail', status: 503, match: 'chat.postMessage', count: 1 });
    await expect(slack.chat.postMessage({ channel: '#prospector', text: 'posted anyway' })).rejects.toMatchObject({
      code: ErrorCode.HTTPError,
      statusCode: 503,
    });
    expect((await recorded('prospector')).map((m) => m.text)).toEqual(['posted anyway']);
  });

  it('incoming webhook posts are recorded; bad payloads and faults surface as webhook HTTP errors', async () => {
    const webhook = createSlackWebhook(cfg);
    await expect(webhook.send({ text: '3 new signals', blocks: [{ type: 'divider' }] })).resolves.toEqual({ text: 'ok' });
    const [message] = await recorded('prospector');
    expect(message).toMatchObject({ channel: 'C0PROSPECT', text: '3 new signals', source: 'webhook', blocks: [{ type: 'divider' }] });

    await expect(webhook.send({})).rejects.toMatchObject({ code: WebhookErrorCode.HTTPError, statusCode: 400, body: 'no_text' });

    await control.addFaults({ provider: 'slack', kind: 'error', status: 503, match: '/slack/webhook/', count: 1 });
    await expect(webhook.send('during outage')).rejects.toMatchObject({ code: WebhookErrorCode.HTTPError, statusCode: 503 });
    await control.addFaults({ provider: 'slack', kind: 'rate_limit', match: '/slack/webhook/', retryAfterSeconds: 5, count: 1 });
    await expect(webhook.send('too fast')).rejects.toMatchObject({ code: WebhookErrorCode.HTTPError, statusCode: 429 });

    expect((await recorded()).filter((m) => m.source === 'webhook').map((m) => m.text)).toEqual(['3 new signals']);
  });
});
