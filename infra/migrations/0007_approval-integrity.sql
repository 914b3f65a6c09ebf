-- Up Migration

-- Who may decide on drafts. An identity is a person's email address; API keys
-- belong to one, and decisions are taken in its name only. `owners` and
-- `domains` narrow what the approver may decide (NULL: no limit).
CREATE TABLE approvers (
  identity   text PRIMARY KEY CHECK (identity = lower(identity) AND identity LIKE '%_@_%'),
  name       text,
  actions    text[] NOT NULL CHECK (cardinality(actions) > 0 AND actions <@ ARRAY['approve', 'edit', 'reject']),
  owners     text[],
  domains    text[],
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every key acts for an identity: a person (an approver's email) or a service
-- ("service:<key id>"), which can call the API but never decide on a draft.
ALTER TABLE api_keys ADD COLUMN identity text;
UPDATE api_keys SET identity = 'service:' || id;
ALTER TABLE api_keys ALTER COLUMN identity SET NOT NULL;
CREATE INDEX api_keys_identity_idx ON api_keys (identity);

-- An approval binds the exact content that will go out: one row per version
-- and content (a reset run may show other text under the same version number).
-- field_hashes name what changed when Gmail no longer holds that content.
ALTER TABLE intake_sends DROP CONSTRAINT intake_sends_intake_key_version_fkey;
ALTER TABLE intake_approvals DROP CONSTRAINT intake_approvals_pkey;
ALTER TABLE intake_approvals
  ADD PRIMARY KEY (intake_key, version, content_hash),
  ADD COLUMN field_hashes jsonb NOT NULL DEFAULT '{}'::jsonb,
  ADD COLUMN signed boolean NOT NULL DEFAULT false,
  ADD COLUMN key_id text;

-- The one send of an intake. A claim is exclusive while its lease runs; the
-- holder renews it while alive. `send_called_at` is set just before Gmail's
-- drafts.send: from then on the send may have happened, whatever else fails.
ALTER TABLE intake_sends
  ADD COLUMN content_hash text,
  ADD COLUMN holder text,
  ADD COLUMN lease_until timestamptz,
  ADD COLUMN send_called_at timestamptz,
  ADD COLUMN draft_message_id text;
UPDATE intake_sends s SET content_hash = a.content_hash
  FROM intake_approvals a WHERE a.intake_key = s.intake_key AND a.version = s.version;
ALTER TABLE intake_sends ALTER COLUMN content_hash SET NOT NULL;
ALTER TABLE intake_sends DROP CONSTRAINT intake_sends_state_check;
UPDATE intake_sends SET send_called_at = started_at WHERE state = 'sending';
ALTER TABLE intake_sends ADD CONSTRAINT intake_sends_state_check CHECK (state IN ('claimed', 'sending', 'sent'));
ALTER TABLE intake_sends ADD FOREIGN KEY (intake_key, version, content_hash) REFERENCES intake_approvals (intake_key, version, content_hash);

-- Down Migration
ALTER TABLE intake_sends DROP CONSTRAINT intake_sends_intake_key_version_content_hash_fkey;
ALTER TABLE intake_sends DROP CONSTRAINT intake_sends_state_check;
UPDATE intake_sends SET state = 'sending' WHERE state = 'claimed';
ALTER TABLE intake_sends ADD CONSTRAINT intake_sends_state_check CHECK (state IN ('sending', 'sent'));
ALTER TABLE intake_sends DROP COLUMN draft_message_id, DROP COLUMN send_called_at, DROP COLUMN lease_until, DROP COLUMN holder, DROP COLUMN content_hash;
ALTER TABLE intake_approvals DROP CONSTRAINT intake_approvals_pkey;
DELETE FROM intake_approvals a USING intake_approvals b
  WHERE a.intake_key = b.intake_key AND a.version = b.version AND a.approved_at < b.approved_at;
ALTER TABLE intake_approvals DROP COLUMN key_id, DROP COLUMN signed, DROP COLUMN field_hashes, ADD PRIMARY KEY (intake_key, version);
ALTER TABLE intake_sends ADD FOREIGN KEY (intake_key, version) REFERENCES intake_approvals (intake_key, version);
DROP INDEX api_keys_identity_idx;
ALTER TABLE api_keys DROP COLUMN identity;
DROP TABLE approvers;
