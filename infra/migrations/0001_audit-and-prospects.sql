-- Up Migration

-- Append-only record of every step, signal and decision. event_key makes an
-- activity retry land on the row it already wrote instead of adding a second.
CREATE TABLE audit_events (
  id          bigserial PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT now(),
  event_key   text UNIQUE,
  workflow_id text,
  run_id      text,
  actor       text NOT NULL,
  kind        text NOT NULL,
  action      text NOT NULL,
  outcome     text NOT NULL,
  details     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_events_workflow_idx ON audit_events (workflow_id, at);
CREATE INDEX audit_events_at_idx ON audit_events (at);

CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- Read model of intakes for lists and filters; the workflow is the source of truth.
CREATE TABLE prospects (
  id             text PRIMARY KEY,
  run_id         text,
  email          text NOT NULL,
  domain         text NOT NULL,
  name           text,
  company        text,
  owner          text,
  source         text NOT NULL DEFAULT 'api',
  stage          text NOT NULL,
  approval_state text NOT NULL DEFAULT 'NONE',
  draft_version  integer NOT NULL DEFAULT 0,
  subject        text,
  reason         text,
  data           jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX prospects_stage_idx ON prospects (stage, updated_at DESC);
CREATE INDEX prospects_domain_idx ON prospects (domain);

-- Down Migration
DROP TABLE prospects;
DROP TABLE audit_events;
DROP FUNCTION audit_events_append_only();
