-- Up Migration

-- The intake outbox. POST /v1/prospects and the HubSpot webhook write a lead
-- here (with its audit row and first read-model row, in one transaction) and
-- answer at once; the dispatcher in every API replica starts the intakes in
-- Temporal. A lead is therefore kept even while Temporal is down, and started
-- once it is back. The submission id doubles as the Temporal start request id,
-- so starting the same row again lands on the run it started before.
CREATE TABLE intake_submissions (
  id              uuid PRIMARY KEY,
  -- Submission order (created_at is one instant for a whole batch): a person's
  -- submissions are dispatched in this order.
  seq             bigint GENERATED ALWAYS AS IDENTITY,
  workflow_id     text NOT NULL,
  -- The full IntakeInput the intake is started with (lead, mode, timeout, sender, submissionId).
  input           jsonb NOT NULL,
  domain          text NOT NULL,
  requested_by    text NOT NULL,
  key_id          text,
  task_queue      text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  -- Set once Temporal accepted the start: the run it landed on, and whether this
  -- submission started that run or joined one already running.
  dispatched_at   timestamptz,
  run_id          text,
  outcome         text CHECK (outcome IN ('started', 'attached')),
  attempts        integer NOT NULL DEFAULT 0,
  last_error      text,
  -- When a dispatcher may take the row next: now for new rows, a lease while one
  -- is starting it, a back-off after Temporal refused or was unreachable.
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  CHECK ((dispatched_at IS NULL) = (outcome IS NULL))
);

-- What the dispatchers claim (due, oldest first) and what the outbox depth counts.
CREATE INDEX intake_submissions_due_idx ON intake_submissions (next_attempt_at, seq) WHERE dispatched_at IS NULL;
-- "Is a submission for this person still waiting?" (a second one answers 'attached').
-- Also: "is an older one for this person waiting?" (only a person's oldest is dispatched).
CREATE INDEX intake_submissions_waiting_idx ON intake_submissions (workflow_id, seq) WHERE dispatched_at IS NULL;
-- Pruning of dispatched rows.
CREATE INDEX intake_submissions_dispatched_idx ON intake_submissions (dispatched_at) WHERE dispatched_at IS NOT NULL;

-- Back-pressure of the dispatchers: intakes started but not yet taken up by a worker.
CREATE INDEX prospects_started_waiting_idx ON prospects (run_started_at) WHERE stage = 'SUBMITTED' AND intake_key IS NOT NULL;

-- Down Migration
DROP INDEX prospects_started_waiting_idx;
DROP TABLE intake_submissions;
