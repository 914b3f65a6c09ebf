import { ErrorCode, type KnownBlock, type WebClient } from '@slack/web-api';
import { inTransaction, type Pool } from '../../lib/store/db.js';
import type { Logger } from '../../lib/config/logger.js';
import {
  addNotification,
  adoptStaleNotifications,
  claimableSignalIds,
  claimSignals,
  getNotification,
  lockRunPlanning,
  markNotificationAttempted,
  markNotificationPosted,
  owedMessageKeys,
  runHasNotifications,
  type SignalNotification,
} from '../../lib/store/notifications.js';
import { markNotified, signalsForMessage, type SignalForMessage } from '../../lib/store/signals.js';

/**
 * Slack notification of qualifying signals, each signal once.
 *
 * 1. Plan (once per run, in one transaction): the run claims every signal at
 *    or above the threshold that is neither notified nor claimed
 *    (signal_notify_claims' primary key makes the claim exclusive), and owes
 *    one message per signal, or a single digest when many qualify.
 * 2. Deliver each owed message: mark it attempted, post it with Slack message
 *    metadata carrying its key, record the ts and set the signals' notified_at.
 *    A message already attempted (the activity is a retry: Slack may have
 *    applied the post and failed to answer) is first looked up by that key in
 *    the channel history and only posted if absent.
 */

export const NOTIFY_EVENT_TYPE = 'prospector_signal';

export interface NotifyInput {
  runKey: string;
  threshold: number;
  digestMin: number;
  digestList: number;
  channel: string;
  /** Messages of another run unposted for this long are adopted (that run died). */
  staleAfterMs?: number;
}

export type DeliveryOutcome = 'posted' | 'recovered' | 'done';

export interface Notifier {
  /** Claims this run's qualifying signals (once per run) and returns the keys of the messages it still owes. */
  plan(input: NotifyInput): Promise<string[]>;
  /** Delivers one owed message; safe to call again for the same key (it is never posted twice). */
  deliver(messageKey: string, input: NotifyInput): Promise<{ outcome: DeliveryOutcome; signals: number }>;
}

export function createNotifier(deps: { pool: Pool; slack: WebClient; log: Logger }): Notifier {
  const channelIds = new Map<string, string>();

  async function resolveChannel(ref: string): Promise<string> {
    if (/^[CGD][A-Z0-9]{6,}$/.test(ref)) return ref;
    const cached = channelIds.get(ref);
    if (cached) return cached;
    const name = ref.replace(/^#/, '');
    let cursor: string | undefined;
    do {
      const page = await deps.slack.conversations.list({ types: 'public_channel,private_channel', limit: 200, exclude_archived: true, cursor });
      const found = page.channels?.find((c) => c.name === name);
      if (found?.id) {
        channelIds.set(ref, found.id);
        return found.id;
      }
      cursor = page.response_metadata?.next_cursor || undefined;
    } while (cursor);
    throw new SlackChannelMissingError(`Slack channel ${ref} not found (invite the bot or set HARVEST_SLACK_CHANNEL)`);
  }

  /** The ts of a message already posted with this key, looking back from shortly before the first attempt. */
  async function findPosted(channelId: string, key: string, attemptedAt: Date): Promise<string | undefined> {
    const oldest = (attemptedAt.getTime() / 1000 - 120).toFixed(6);
    let cursor: string | undefined;
    for (let page = 0; page < 50; page++) {
      const res = await deps.slack.conversations.history({ channel: channelId, oldest, limit: 200, include_all_metadata: true, cursor });
      const hit = res.messages?.find((m) => (m.metadata?.event_payload as { message_key?: string } | undefined)?.message_key === key);
      if (hit?.ts) return hit.ts;
      cursor = res.response_metadata?.next_cursor || undefined;
      if (!res.has_more || !cursor) return undefined;
    }
    return undefined;
  }

  return {
    async plan(input) {
      await plan(deps.pool, input);
      return owedMessageKeys(deps.pool, input.runKey);
    },

    async deliver(messageKey, input) {
      const m = await getNotification(deps.pool, messageKey);
      if (!m) throw new Error(`no owed Slack message ${messageKey}`);
      if (m.postedAt) return { outcome: 'done', signals: m.signalIds.length };
      const channelId = await resolveChannel(m.channel);
      let ts = m.attemptedAt ? await findPosted(channelId, m.messageKey, m.attemptedAt) : undefined;
      const recovered = Boolean(ts);
      if (!ts) {
        // Recorded before the post: if the answer is lost, the retry knows to look in the history first.
        await markNotificationAttempted(deps.pool, m.messageKey);
        const content = await render(deps.pool, m, input);
        const res = await deps.slack.chat.postMessage({
          channel: channelId,
          text: content.text,
          blocks: content.blocks,
          unfurl_links: false,
          unfurl_media: false,
          metadata: { event_type: NOTIFY_EVENT_TYPE, event_payload: { message_key: m.messageKey, run_key: m.runKey, kind: m.kind, count: m.signalIds.length } },
        });
        ts = res.ts!;
      } else {
        deps.log.info({ messageKey }, 'notify: message already in Slack (an earlier attempt was applied); not posting again');
      }
      await markPosted(deps.pool, m, channelId, ts);
      return { outcome: recovered ? 'recovered' : 'posted', signals: m.signalIds.length };
    },
  };
}

export class SlackChannelMissingError extends Error {
  override readonly name = 'SlackChannelMissingError';
}

async function plan(pool: Pool, input: NotifyInput): Promise<void> {
  await inTransaction(pool, async (client) => {
    // Serialise planners of the same run (two attempts of one activity must not both plan).
    await lockRunPlanning(client, input.runKey);
    if (await runHasNotifications(client, input.runKey)) return;
    await adoptStaleNotifications(client, input.runKey, input.staleAfterMs ?? 3_600_000);
    const ids = await claimableSignalIds(client, input.threshold);
    if (ids.length > 0) {
      const digest = ids.length >= input.digestMin;
      const claimed = await claimSignals(client, ids.map((id) => ({ signalId: id, messageKey: digest ? `digest:${input.runKey}` : `signal:${id}` })));
      const byKey = new Map<string, string[]>();
      for (const c of claimed) byKey.set(c.messageKey, [...(byKey.get(c.messageKey) ?? []), c.signalId]);
      for (const [messageKey, signalIds] of byKey) {
        await addNotification(client, { messageKey, runKey: input.runKey, kind: digest ? 'digest' : 'single', signalIds, channel: input.channel });
      }
    }
  });
}

async function markPosted(pool: Pool, m: SignalNotification, channelId: string, ts: string): Promise<void> {
  await inTransaction(pool, async (client) => {
    await markNotificationPosted(client, m.messageKey, { channelId, ts });
    await markNotified(client, m.signalIds);
  });
}

// ---- message content ---------------------------------------------------------------------------------

/** Slack mrkdwn treats &, < and > as control characters. */
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const oneLine = (s: string, max: number) => {
  const flat = s.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
};
const who = (r: SignalForMessage) => (r.authorHandle ? (r.source === 'x' ? `@${r.authorHandle}` : r.authorHandle) : r.source);
const label = (r: SignalForMessage) => `${Math.round(r.score)}`;
const link = (r: SignalForMessage, textValue: string) => (r.url ? `<${r.url}|${esc(textValue)}>` : esc(textValue));

async function render(pool: Pool, m: SignalNotification, input: NotifyInput): Promise<{ text: string; blocks: KnownBlock[] }> {
  const rows = await signalsForMessage(pool, m.signalIds, m.kind === 'digest' ? input.digestList : 1);
  if (m.kind === 'single' && rows[0]) return single(rows[0]);
  return digest(rows, m.signalIds.length, input.threshold);
}

function single(r: SignalForMessage): { text: string; blocks: KnownBlock[] } {
  const category = (r.category ?? 'other').replace('_', ' ');
  const text = `Signal ${label(r)}/100 (${category}) from ${who(r)}: ${oneLine(r.text, 200)}${r.url ? ` ${r.url}` : ''}`;
  const blocks: KnownBlock[] = [
    {
      type: 'section',
      text: {
        type: 'mrkdwn',
        text: `*${link(r, `Signal ${label(r)}/100`)}* · ${category} · urgency ${r.urgency ?? 0} · ${r.sentiment ?? 'neutral'}\n>${esc(oneLine(r.text, 600))}`,
      },
    },
    {
      type: 'context',
      elements: [{ type: 'mrkdwn', text: esc(`${who(r)} · ${r.likes} likes · ${r.reposts} reposts · ${r.replies} replies · query ${r.queryNames.join(', ')}`) }],
    },
  ];
  return { text, blocks };
}

function digest(rows: SignalForMessage[], count: number, threshold: number): { text: string; blocks: KnownBlock[] } {
  const lines = rows.map((r) => `• *${label(r)}* ${(r.category ?? 'other').replace('_', ' ')} · ${esc(who(r))}: ${link(r, oneLine(r.text, 140))}`);
  const sections: KnownBlock[] = [];
  for (let i = 0; i < lines.length; i += 5) sections.push({ type: 'section', text: { type: 'mrkdwn', text: lines.slice(i, i + 5).join('\n') } });
  const more = count - rows.length;
  return {
    text: `${count} new signals scored ${threshold} or more. Top: ${rows.slice(0, 3).map((r) => `${label(r)} ${who(r)}`).join(', ')}`,
    blocks: [
      { type: 'header', text: { type: 'plain_text', text: `${count} new signals at or above ${threshold}` } },
      ...sections,
      { type: 'context', elements: [{ type: 'mrkdwn', text: more > 0 ? `+${more} more · \`prospector signals top\`` : '`prospector signals top` for details' }] },
    ],
  };
}

// ---- errors --------------------------------------------------------------------------------------------------

/** How long Slack asked us to wait (ms), for rate-limited calls. */
export function slackRetryAfterMs(err: unknown): number | undefined {
  const e = err as { code?: string; retryAfter?: number };
  return e?.code === ErrorCode.RateLimitedError && typeof e.retryAfter === 'number' ? e.retryAfter * 1000 : undefined;
}

/** Errors a retry cannot fix: a missing channel, bad auth, a malformed message. */
export function isPermanentSlackError(err: unknown): boolean {
  if (err instanceof SlackChannelMissingError) return true;
  const e = err as { code?: string; data?: { error?: string } };
  if (e?.code !== ErrorCode.PlatformError) return false;
  return ['channel_not_found', 'not_in_channel', 'is_archived', 'invalid_auth', 'not_authed', 'account_inactive', 'token_revoked', 'invalid_blocks', 'invalid_metadata_format', 'msg_too_long', 'no_text'].includes(
    e.data?.error ?? '',
  );
}
