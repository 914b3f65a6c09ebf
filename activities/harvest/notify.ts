import { ErrorCode, type KnownBlock, type WebClient } from '@slack/web-api';
import { inTransaction, type Pool } from '../../lib/store/db.js';
import type { Logger } from '../../lib/config/logger.js';

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

interface OwedMessage {
  message_key: string;
  run_key: string;
  kind: 'single' | 'digest';
  signal_ids: string[];
  channel: string;
  attempted_at: Date | null;
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
      const { rows } = await deps.pool.query<{ message_key: string }>(
        'SELECT message_key FROM signal_notifications WHERE run_key = $1 AND posted_at IS NULL ORDER BY created_at, message_key',
        [input.runKey],
      );
      return rows.map((r) => r.message_key);
    },

    async deliver(messageKey, input) {
      const { rows } = await deps.pool.query<OwedMessage & { posted_at: Date | null }>(
        `SELECT message_key, run_key, kind, signal_ids::text[] AS signal_ids, channel, attempted_at, posted_at
           FROM signal_notifications WHERE message_key = $1`,
        [messageKey],
      );
      const m = rows[0];
      if (!m) throw new Error(`no owed Slack message ${messageKey}`);
      if (m.posted_at) return { outcome: 'done', signals: m.signal_ids.length };
      const channelId = await resolveChannel(m.channel);
      let ts = m.attempted_at ? await findPosted(channelId, m.message_key, m.attempted_at) : undefined;
      const recovered = Boolean(ts);
      if (!ts) {
        // Recorded before the post: if the answer is lost, the retry knows to look in the history first.
        await deps.pool.query('UPDATE signal_notifications SET attempted_at = now() WHERE message_key = $1', [m.message_key]);
        const content = await render(deps.pool, m, input);
        const res = await deps.slack.chat.postMessage({
          channel: channelId,
          text: content.text,
          blocks: content.blocks,
          unfurl_links: false,
          unfurl_media: false,
          metadata: { event_type: NOTIFY_EVENT_TYPE, event_payload: { message_key: m.message_key, run_key: m.run_key, kind: m.kind, count: m.signal_ids.length } },
        });
        ts = res.ts!;
      } else {
        deps.log.info({ messageKey }, 'notify: message already in Slack (an earlier attempt was applied); not posting again');
      }
      await markPosted(deps.pool, m, channelId, ts);
      return { outcome: recovered ? 'recovered' : 'posted', signals: m.signal_ids.length };
    },
  };
}

export class SlackChannelMissingError extends Error {
  override readonly name = 'SlackChannelMissingError';
}

async function plan(pool: Pool, input: NotifyInput): Promise<void> {
  await inTransaction(pool, async (client) => {
    // Serialise planners of the same run (two attempts of one activity must not both plan).
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`notify:${input.runKey}`]);
    const planned = await client.query('SELECT 1 FROM signal_notifications WHERE run_key = $1 LIMIT 1', [input.runKey]);
    if (planned.rowCount) return;
    await client.query(
      `UPDATE signal_notifications SET run_key = $1 WHERE posted_at IS NULL AND run_key <> $1 AND created_at < now() - make_interval(secs => $2)`,
      [input.runKey, (input.staleAfterMs ?? 3_600_000) / 1000],
    );
    const candidates = await client.query<{ id: string }>(
      `SELECT id FROM signals s
        WHERE score >= $1 AND notified_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM signal_notify_claims c WHERE c.signal_id = s.id)
        ORDER BY score DESC, id LIMIT 100000 FOR UPDATE SKIP LOCKED`,
      [input.threshold],
    );
    const ids = candidates.rows.map((r) => r.id);
    if (ids.length > 0) {
      const digest = ids.length >= input.digestMin;
      const keys = ids.map((id) => (digest ? `digest:${input.runKey}` : `signal:${id}`));
      const claimed = await client.query<{ signal_id: string; message_key: string }>(
        `INSERT INTO signal_notify_claims (signal_id, message_key) SELECT * FROM unnest($1::bigint[], $2::text[])
         ON CONFLICT (signal_id) DO NOTHING RETURNING signal_id::text, message_key`,
        [ids, keys],
      );
      const byKey = new Map<string, string[]>();
      for (const c of claimed.rows) byKey.set(c.message_key, [...(byKey.get(c.message_key) ?? []), c.signal_id]);
      for (const [key, signalIds] of byKey) {
        await client.query(
          `INSERT INTO signal_notifications (message_key, run_key, kind, signal_ids, channel) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (message_key) DO NOTHING`,
          [key, input.runKey, digest ? 'digest' : 'single', signalIds, input.channel],
        );
      }
    }
  });
}

async function markPosted(pool: Pool, m: OwedMessage, channelId: string, ts: string): Promise<void> {
  await inTransaction(pool, async (client) => {
    await client.query('UPDATE signal_notifications SET posted_at = now(), slack_ts = $2, slack_channel_id = $3 WHERE message_key = $1', [m.message_key, ts, channelId]);
    await client.query('UPDATE signals SET notified_at = now() WHERE id = ANY($1::bigint[]) AND notified_at IS NULL', [m.signal_ids]);
  });
}

// ---- message content ---------------------------------------------------------------------------------

interface Row {
  id: string;
  url: string | null;
  author_handle: string | null;
  source: string;
  text: string;
  score: string;
  category: string | null;
  sentiment: string | null;
  urgency: number | null;
  likes: number;
  reposts: number;
  replies: number;
  query_names: string[];
}

/** Slack mrkdwn treats &, < and > as control characters. */
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const oneLine = (s: string, max: number) => {
  const flat = s.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
};
const who = (r: Row) => (r.author_handle ? (r.source === 'x' ? `@${r.author_handle}` : r.author_handle) : r.source);
const label = (r: Row) => `${Math.round(Number(r.score))}`;
const link = (r: Row, textValue: string) => (r.url ? `<${r.url}|${esc(textValue)}>` : esc(textValue));

async function render(pool: Pool, m: OwedMessage, input: NotifyInput): Promise<{ text: string; blocks: KnownBlock[] }> {
  const limit = m.kind === 'digest' ? input.digestList : 1;
  const { rows } = await pool.query<Row>(
    `SELECT id::text, url, author_handle, source, text, score::text, category, sentiment, urgency, likes, reposts, replies, query_names
       FROM signals WHERE id = ANY($1::bigint[]) ORDER BY signals.score DESC NULLS LAST, signals.id LIMIT $2`,
    [m.signal_ids, limit],
  );
  if (m.kind === 'single' && rows[0]) return single(rows[0]);
  return digest(rows, m.signal_ids.length, input.threshold);
}

function single(r: Row): { text: string; blocks: KnownBlock[] } {
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
      elements: [{ type: 'mrkdwn', text: esc(`${who(r)} · ${r.likes} likes · ${r.reposts} reposts · ${r.replies} replies · query ${r.query_names.join(', ')}`) }],
    },
  ];
  return { text, blocks };
}

function digest(rows: Row[], count: number, threshold: number): { text: string; blocks: KnownBlock[] } {
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
