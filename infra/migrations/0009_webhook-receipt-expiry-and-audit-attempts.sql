-- Up Migration

-- Each webhook receipt says how long it recognises a replay or a retry: a
-- request's signature for twice the signature window, a HubSpot event for the
-- dedupe window. A receipt past it is pruned, and claiming its key again takes
-- it afresh. Receipts from before this column get the default window.
ALTER TABLE webhook_receipts ADD COLUMN expires_at timestamptz;
UPDATE webhook_receipts SET expires_at = received_at + interval '7 days';
ALTER TABLE webhook_receipts ALTER COLUMN expires_at SET NOT NULL;
CREATE INDEX webhook_receipts_expires_idx ON webhook_receipts (expires_at);
DROP INDEX webhook_receipts_at_idx;

-- Requests refused because their address spent its failed-authentication
-- budget are counted, not written one row each: one row stands for `attempts`
-- refusals of one address on one route.
ALTER TABLE api_auth_audit ADD COLUMN attempts integer NOT NULL DEFAULT 1 CHECK (attempts >= 1);

-- Down Migration
ALTER TABLE api_auth_audit DROP COLUMN attempts;
CREATE INDEX webhook_receipts_at_idx ON webhook_receipts (received_at);
DROP INDEX webhook_receipts_expires_idx;
ALTER TABLE webhook_receipts DROP COLUMN expires_at;
