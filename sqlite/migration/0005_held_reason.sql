-- held_reason: why an entry is held (the operator's hold, or a seq_reused answer), kept apart
-- from last_error so that holding an entry does not hide the error it had; cleared on release.
ALTER TABLE outbox ADD COLUMN held_reason TEXT NOT NULL DEFAULT '';
