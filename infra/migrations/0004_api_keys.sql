-- Up Migration

-- API keys. The plaintext key is shown once and never stored: only an HMAC of it
-- (keyed with a server-side pepper) and its public prefix, used for lookup.
CREATE TABLE api_keys (
  id             text PRIMARY KEY,
  prefix         text NOT NULL UNIQUE,
  secret_hash    text NOT NULL,
  name           text NOT NULL,
  scopes         text[] NOT NULL,
  -- Overrides RATE_LIMIT_KEY for this key, e.g. '5000/1m'.
  rate_limit     text,
  created_by     text NOT NULL,
  created_at     timestamptz NOT NULL,
  expires_at     timestamptz,
  revoked_at     timestamptz,
  revoked_reason text,
  rotated_from   text REFERENCES api_keys (id),
  replaced_by    text REFERENCES api_keys (id),
  last_used_at   timestamptz,
  -- Scope names are checked by the application (SCOPES in api/route.ts).
  CONSTRAINT api_keys_has_scopes CHECK (cardinality(scopes) > 0)
);
CREATE INDEX api_keys_created_idx ON api_keys (created_at DESC);

-- One row per authentication/authorisation decision on the API. Rows are never
-- updated; retention may delete old rows.
CREATE TABLE api_auth_audit (
  id           bigserial PRIMARY KEY,
  at           timestamptz NOT NULL,
  key_id       text,
  -- The prefix presented when it matched no key (forensics); never the secret.
  key_prefix   text,
  route        text NOT NULL,
  operation_id text,
  method       text NOT NULL,
  request_id   text,
  trace_id     text,
  decision     text NOT NULL CHECK (decision IN ('allow', 'deny_unauthenticated', 'deny_scope', 'deny_rate', 'deny_revoked', 'deny_expired')),
  status       smallint NOT NULL,
  scope        text,
  client_ip    text
);
CREATE INDEX api_auth_audit_at_idx ON api_auth_audit (at);
CREATE INDEX api_auth_audit_key_idx ON api_auth_audit (key_id, at);
CREATE INDEX api_auth_audit_denied_idx ON api_auth_audit (decision, at) WHERE decision <> 'allow';

CREATE FUNCTION api_auth_audit_no_update() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'api_auth_audit rows are never updated';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER api_auth_audit_no_update BEFORE UPDATE ON api_auth_audit
  FOR EACH ROW EXECUTE FUNCTION api_auth_audit_no_update();

-- Rate-limit counters when no Redis is configured (rate-limiter-flexible's
-- RateLimiterPostgres layout). UNLOGGED: counters need no crash safety, and
-- skipping the WAL keeps the per-request upsert cheap.
CREATE UNLOGGED TABLE api_rate_limits (
  key    varchar(255) PRIMARY KEY,
  points integer NOT NULL DEFAULT 0,
  expire bigint
);

-- Down Migration
DROP TABLE api_rate_limits;
DROP TABLE api_auth_audit;
DROP FUNCTION api_auth_audit_no_update();
DROP TABLE api_keys;
