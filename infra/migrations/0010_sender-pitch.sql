-- Up Migration

-- What the sender sells, in the operator's words: evidence the writer may
-- draw on (a `sender` fact) for claims about our own product. Optional; the
-- length limit matches the API's.
ALTER TABLE intake_settings ADD COLUMN sender_pitch text CHECK (char_length(sender_pitch) <= 1000);

-- Down Migration
ALTER TABLE intake_settings DROP COLUMN sender_pitch;
