-- Up Migration

-- A fetch window left open when a run stopped early (rate limit spent, page cap
-- reached): where to resume, so the next run neither skips nor refetches it.
-- source_cursors keeps the cursor of the last COMPLETE window only.
CREATE TABLE source_open_windows (
  source        text NOT NULL,
  query_name    text NOT NULL,
  since_cursor  text,
  newest_cursor text,
  page_token    text NOT NULL,
  pages_read    integer NOT NULL DEFAULT 0,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source, query_name)
);

-- One row per harvest run (the workflow is the source of truth; this is for lists and stats).
CREATE TABLE harvest_runs (
  run_key     text PRIMARY KEY,
  workflow_id text NOT NULL,
  trigger     text NOT NULL,
  started_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  summary     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX harvest_runs_started_idx ON harvest_runs (started_at DESC);

-- Slack messages a run owes: one per signal, or one digest. The message key is
-- also in the Slack message metadata, so a retry after Slack applied the post
-- finds it in the channel history instead of posting twice.
CREATE TABLE signal_notifications (
  message_key  text PRIMARY KEY,
  run_key      text NOT NULL,
  kind         text NOT NULL CHECK (kind IN ('single', 'digest')),
  signal_ids   bigint[] NOT NULL,
  channel      text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  attempted_at timestamptz,
  posted_at    timestamptz,
  slack_channel_id text,
  slack_ts     text
);
CREATE INDEX signal_notifications_run_idx ON signal_notifications (run_key);
CREATE INDEX signal_notifications_unposted_idx ON signal_notifications (created_at) WHERE posted_at IS NULL;

-- Which message a signal was given to: the primary key makes "each signal once" hold across concurrent runs.
CREATE TABLE signal_notify_claims (
  signal_id   bigint PRIMARY KEY,
  message_key text NOT NULL,
  claimed_at  timestamptz NOT NULL DEFAULT now()
);

-- Authors we know as CRM contacts (maintained by operators), so a qualifying
-- signal can start a prospect intake when its query allows it.
CREATE TABLE signal_author_contacts (
  source        text NOT NULL,
  author_handle text NOT NULL,
  email         text NOT NULL,
  name          text,
  company       text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source, author_handle)
);

CREATE INDEX signals_last_seen_idx ON signals (last_seen_at);
CREATE INDEX signals_unnotified_idx ON signals (score DESC) WHERE notified_at IS NULL;

-- Down Migration
DROP INDEX IF EXISTS signals_unnotified_idx;
DROP INDEX IF EXISTS signals_last_seen_idx;
DROP TABLE signal_author_contacts;
DROP TABLE signal_notify_claims;
DROP TABLE signal_notifications;
DROP TABLE harvest_runs;
DROP TABLE source_open_windows;
