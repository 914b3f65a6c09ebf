-- Up Migration

-- The read model (`prospects`) is the intake workflow's alone from here on.
-- A lead the API took and no run has written about yet is shown from the
-- outbox instead (the prospect_rows view), so the API writes only its own
-- table and no ordering between writers is needed.

-- Whether the row's intake has ended, written with its stage by the workflow
-- (END_STAGES in lib/domain/prospect.ts): a new lead for this person starts a
-- new intake instead of joining.
ALTER TABLE prospects ADD COLUMN ended boolean NOT NULL DEFAULT false;
UPDATE prospects SET ended = stage IN ('APPROVED', 'SENT', 'REJECTED', 'EXPIRED', 'SKIPPED', 'NEEDS_HUMAN', 'FAILED');

-- Rows the API and the dispatcher wrote for submissions: the view shows those from the outbox now.
DELETE FROM prospects WHERE stage = 'SUBMITTED';
DROP INDEX prospects_started_waiting_idx;

-- "Started, and its run has not written yet": the dispatchers' back-pressure and the view's pending rows.
CREATE INDEX intake_submissions_started_idx ON intake_submissions (dispatched_at) WHERE outcome = 'started';

-- One row per person: the latest intake's read-model row, or, while an
-- intake waits to start or for its run's first step, the submission that
-- starts it (stage SUBMITTED): the person's oldest one not yet shown by the
-- read model, the one the API answered "queued". A submission that will join
-- a running intake shows that intake. Submissions started more than a day ago
-- and never taken up by a worker fall back to the person's previous row (the
-- outbox metrics and the dispatchers' back-pressure show those long before).
CREATE VIEW prospect_rows AS
WITH pending AS (
  SELECT DISTINCT ON (s.workflow_id) s.*
    FROM intake_submissions s
   WHERE (s.dispatched_at IS NULL OR (s.outcome = 'started' AND s.dispatched_at > now() - interval '1 day'))
     AND NOT EXISTS (SELECT 1 FROM prospects p WHERE p.id = s.workflow_id AND (p.intake_key = s.run_id OR NOT p.ended))
   ORDER BY s.workflow_id, s.seq
)
SELECT p.id, p.run_id, p.intake_key, p.email, p.domain, p.name, p.company, p.owner, p.source, p.stage, p.approval_state, p.mode,
       p.draft_version, p.subject, p.reason, p.data, p.approval_deadline, p.submission_id, p.created_at, p.updated_at
  FROM prospects p
 WHERE NOT EXISTS (SELECT 1 FROM pending s WHERE s.workflow_id = p.id)
UNION ALL
SELECT s.workflow_id, s.run_id, s.run_id, s.input->'lead'->>'email', s.domain, s.input->'lead'->>'name', s.input->'lead'->>'company', NULL,
       COALESCE(s.input->'lead'->>'source', 'api'), 'SUBMITTED', 'NONE', COALESCE(s.input->>'mode', 'draft_only'),
       0, NULL, NULL, '{}'::jsonb, NULL, s.id::text, s.created_at, COALESCE(s.dispatched_at, s.created_at)
  FROM pending s;

-- Down Migration
DROP VIEW prospect_rows;
DROP INDEX intake_submissions_started_idx;
CREATE INDEX prospects_started_waiting_idx ON prospects (run_started_at) WHERE stage = 'SUBMITTED' AND intake_key IS NOT NULL;
ALTER TABLE prospects DROP COLUMN ended;
