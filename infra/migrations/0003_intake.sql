-- Up Migration

-- Who must never get an email: one address, or every address at a domain
-- (`*@acme.example` also covers its subdomains).
CREATE TABLE suppressions (
  pattern    text PRIMARY KEY,
  kind       text NOT NULL CHECK (kind IN ('address', 'domain')),
  reason     text,
  created_by text,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- Screening policy and sender identity: one row, edited through the API/CLI.
CREATE TABLE intake_settings (
  id                    boolean PRIMARY KEY DEFAULT true CHECK (id),
  paused                boolean NOT NULL DEFAULT false,
  paused_reason         text,
  recontact_window_days integer NOT NULL DEFAULT 14 CHECK (recontact_window_days >= 0),
  domain_daily_cap      integer NOT NULL DEFAULT 20 CHECK (domain_daily_cap >= 0),
  sender_daily_cap      integer NOT NULL DEFAULT 200 CHECK (sender_daily_cap >= 0),
  sender_company        text NOT NULL DEFAULT 'Prospector',
  sender_time_zone      text NOT NULL DEFAULT 'America/New_York',
  working_hours_start   text NOT NULL DEFAULT '09:00' CHECK (working_hours_start ~ '^\d{2}:\d{2}$'),
  working_hours_end     text NOT NULL DEFAULT '17:00' CHECK (working_hours_end ~ '^\d{2}:\d{2}$'),
  updated_by            text,
  updated_at            timestamptz NOT NULL DEFAULT now()
);
INSERT INTO intake_settings DEFAULT VALUES;

-- One row per intake run, written by the screening step: the contact history
-- the re-contact window and the daily caps count. intake_key is the run's
-- first execution run id (stable across worker restarts and resets).
CREATE TABLE intakes (
  intake_key  text PRIMARY KEY,
  workflow_id text NOT NULL,
  run_id      text NOT NULL,
  email       text NOT NULL,
  domain      text NOT NULL,
  sender      text NOT NULL,
  accepted    boolean NOT NULL,
  reason      text,
  final_stage text,
  day         date NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')::date,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX intakes_email_idx ON intakes (email, created_at DESC);
CREATE INDEX intakes_domain_day_idx ON intakes (domain, day) WHERE accepted;
CREATE INDEX intakes_sender_day_idx ON intakes (sender, day) WHERE accepted;

-- Provider objects created for an intake, by business key (e.g. `<intake>:task`):
-- a retried step finds what it made before asking the provider again.
CREATE TABLE intake_effects (
  effect_key  text PRIMARY KEY,
  intake_key  text NOT NULL,
  kind        text NOT NULL,
  external_id text NOT NULL,
  data        jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX intake_effects_intake_idx ON intake_effects (intake_key);

-- Approvals the workflow accepted, one per draft version. The send step reads
-- its approval from here, and intake_sends cannot hold a row without one.
CREATE TABLE intake_approvals (
  intake_key   text NOT NULL,
  version      integer NOT NULL CHECK (version >= 1),
  workflow_id  text NOT NULL,
  run_id       text NOT NULL,
  approver     text NOT NULL,
  reason       text,
  message_id   text NOT NULL,
  content_hash text NOT NULL,
  request_id   text,
  approved_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (intake_key, version)
);

-- At most one send per intake, ever, and only of an approved version.
CREATE TABLE intake_sends (
  intake_key       text PRIMARY KEY,
  version          integer NOT NULL,
  message_id       text NOT NULL,
  gmail_message_id text,
  state            text NOT NULL CHECK (state IN ('sending', 'sent')),
  started_at       timestamptz NOT NULL DEFAULT now(),
  sent_at          timestamptz,
  FOREIGN KEY (intake_key, version) REFERENCES intake_approvals (intake_key, version)
);

-- Inbound webhooks already handled (signature digest, event ids): replays are ignored.
CREATE TABLE webhook_receipts (
  receipt_key text PRIMARY KEY,
  source      text NOT NULL,
  outcome     text NOT NULL,
  details     jsonb NOT NULL DEFAULT '{}'::jsonb,
  received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_receipts_at_idx ON webhook_receipts (received_at);

-- Read model additions: which run the row shows, a step counter so a late
-- write from an earlier step never overwrites a later one, and the mode.
ALTER TABLE prospects
  ADD COLUMN intake_key        text,
  ADD COLUMN run_started_at    timestamptz,
  ADD COLUMN state_seq         integer NOT NULL DEFAULT 0,
  ADD COLUMN mode              text NOT NULL DEFAULT 'draft_only',
  ADD COLUMN submission_id     text,
  ADD COLUMN approval_deadline timestamptz;
CREATE INDEX prospects_approval_idx ON prospects (approval_state, updated_at DESC);
CREATE INDEX prospects_updated_idx ON prospects (updated_at DESC, id);

-- Down Migration
DROP INDEX prospects_updated_idx;
DROP INDEX prospects_approval_idx;
ALTER TABLE prospects
  DROP COLUMN approval_deadline,
  DROP COLUMN submission_id,
  DROP COLUMN mode,
  DROP COLUMN state_seq,
  DROP COLUMN run_started_at,
  DROP COLUMN intake_key;
DROP TABLE webhook_receipts;
DROP TABLE intake_sends;
DROP TABLE intake_approvals;
DROP TABLE intake_effects;
DROP TABLE intakes;
DROP TABLE intake_settings;
DROP TABLE suppressions;
