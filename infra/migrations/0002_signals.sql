-- Up Migration

-- One row per public signal (a post, a feed item), keyed by its source and id there.
-- Metrics only ever increase (the upsert keeps the greatest); query names merge.
CREATE TABLE signals (
  id              bigserial PRIMARY KEY,
  source          text NOT NULL,
  external_id     text NOT NULL,
  url             text,
  author_id       text,
  author_handle   text,
  author_name     text,
  text            text NOT NULL,
  lang            text,
  posted_at       timestamptz NOT NULL,
  first_seen_at   timestamptz NOT NULL DEFAULT now(),
  last_seen_at    timestamptz NOT NULL DEFAULT now(),
  query_names     text[] NOT NULL DEFAULT '{}',
  likes           integer NOT NULL DEFAULT 0,
  reposts         integer NOT NULL DEFAULT 0,
  replies         integer NOT NULL DEFAULT 0,
  quotes          integer NOT NULL DEFAULT 0,
  category        text,
  sentiment       text,
  urgency         smallint,
  tags            text[] NOT NULL DEFAULT '{}',
  reasoning       text,
  analysed_by     text,
  analysed_at     timestamptz,
  score           numeric(6,2),
  scored_at       timestamptz,
  notified_at     timestamptz,
  intake_workflow_id text,
  raw             jsonb NOT NULL DEFAULT '{}'::jsonb,
  UNIQUE (source, external_id),
  CONSTRAINT signals_category_check CHECK (category IS NULL OR category IN ('buying_intent','outage','security','bug','question','praise','other')),
  CONSTRAINT signals_sentiment_check CHECK (sentiment IS NULL OR sentiment IN ('positive','neutral','negative')),
  CONSTRAINT signals_urgency_check CHECK (urgency IS NULL OR urgency BETWEEN 0 AND 5)
);
CREATE INDEX signals_score_idx ON signals (score DESC NULLS LAST);
CREATE INDEX signals_posted_idx ON signals (posted_at DESC);
CREATE INDEX signals_unanalysed_idx ON signals (id) WHERE analysed_at IS NULL;
CREATE INDEX signals_category_idx ON signals (category);

-- Where each source query left off (X: since_id), so a run fetches only what is new.
CREATE TABLE source_cursors (
  source      text NOT NULL,
  query_name  text NOT NULL,
  cursor      text,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source, query_name)
);

-- Down Migration
DROP TABLE source_cursors;
DROP TABLE signals;
