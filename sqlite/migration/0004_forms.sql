-- What the downlink learned of ERP5's meaning (docs/DESIGN.md §3, describe): per portal type
-- its view form and its workflow graph, as the web app renders them.
--
-- form, workflow: JSON (the normalised form; the workflow's states and transitions), NULL
--   when ERP5 has none for the type or it was not learned.
-- hash: hex SHA-256 of form and workflow: describe's per-type hash; forms_hash is derived
--   from every row's.
-- tag: ERP5's identification of its answer (the receiver's tag, sent back on the next
--   refresh so an unchanged form costs a few bytes); '' in stock mode.
-- learned_at: when hash last changed; checked_at: when ERP5 was last asked (the daily
--   refresh counts from it).
CREATE TABLE learned_forms (
	portal_type TEXT PRIMARY KEY,
	form        TEXT,
	workflow    TEXT,
	hash        TEXT NOT NULL,
	tag         TEXT NOT NULL DEFAULT '',
	learned_at  TEXT NOT NULL,
	checked_at  TEXT NOT NULL
) STRICT;
