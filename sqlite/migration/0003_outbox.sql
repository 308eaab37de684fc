-- The outbox as the queue's rules need it (DESIGN §6; package outbox). The table of 0001 is
-- rebuilt with the same columns plus:
--
-- checked_epoch: an epoch under which the row is known never to have been applied: its own
--   epoch when queued, then the running epoch under which ERP5's results query last said
--   "unknown" for it. A row is claimed only when checked_epoch is the running epoch: rows of
--   an earlier epoch go through the results query first (DESIGN §6, Identity).
-- refs: JSON array of the local ids other than its own document that the row names (its
--   parent, field values); the row waits while one of them has an open post (invariant 4).
-- claimed_at: when the row was last set inflight.
-- open: 1 while the row is not final (done, merged, superseded). Package outbox sets it in
--   the statement that changes the state. Indexes that care whether a row is open are
--   partial on open rather than on state, so that claiming (pending → inflight) and settling
--   (inflight → deferred, uncertain…) leave them untouched: SQLite rewrites a partial index
--   whenever a column its WHERE names changes.
--
-- The CHECK on state is written as comparisons: an IN list of more than two constants is
-- evaluated through a temporary b-tree built anew for every row that changes state, which
-- made claiming a 500-entry batch cost several times more.

CREATE TABLE outbox_new (
	seq             INTEGER PRIMARY KEY AUTOINCREMENT,
	epoch           TEXT NOT NULL,
	site_id         TEXT NOT NULL DEFAULT '',
	order_key       INTEGER NOT NULL,
	op              TEXT NOT NULL CHECK (op = 'post' OR op = 'put' OR op = 'remove' OR op = 'action'),
	doc_id          TEXT NOT NULL,
	portal_type     TEXT NOT NULL DEFAULT '',
	parent_id       TEXT NOT NULL DEFAULT '',
	fields          TEXT,            -- JSON object: the changed fields' new values (canonical)
	base            TEXT,            -- JSON object: the same fields' values before the edit
	transition      TEXT NOT NULL DEFAULT '',
	comment         TEXT NOT NULL DEFAULT '',
	peer            TEXT NOT NULL DEFAULT '',
	write_key       TEXT NOT NULL DEFAULT '',
	state           TEXT NOT NULL DEFAULT 'pending' CHECK (state = 'pending' OR state = 'inflight'
	                    OR state = 'done' OR state = 'deferred' OR state = 'uncertain' OR state = 'held'
	                    OR state = 'dead' OR state = 'conflict' OR state = 'merged' OR state = 'superseded'),
	attempts        INTEGER NOT NULL DEFAULT 0,
	next_attempt_at TEXT,
	mode            TEXT NOT NULL DEFAULT '',   -- 'batch' or 'stock': how it was first sent
	payload         BLOB,                       -- the exact bytes it was first sent with
	hash            TEXT NOT NULL DEFAULT '',
	last_error      TEXT NOT NULL DEFAULT '',
	answer          TEXT,                       -- ERP5's answer, JSON
	merged_into     INTEGER REFERENCES outbox_new(seq),
	covers          TEXT,                       -- JSON array of folded seqs, transitively
	superseded_by   INTEGER REFERENCES outbox_new(seq),
	created_at      TEXT NOT NULL,
	updated_at      TEXT NOT NULL,
	checked_epoch   TEXT NOT NULL DEFAULT '',
	refs            TEXT,
	claimed_at      TEXT,
	open            INTEGER NOT NULL DEFAULT 1
) STRICT;

INSERT INTO outbox_new (seq, epoch, site_id, order_key, op, doc_id, portal_type, parent_id, fields, base,
	transition, comment, peer, write_key, state, attempts, next_attempt_at, mode, payload, hash, last_error,
	answer, merged_into, covers, superseded_by, created_at, updated_at, open)
SELECT seq, epoch, site_id, order_key, op, doc_id, portal_type, parent_id, fields, base,
	transition, comment, peer, write_key, state, attempts, next_attempt_at, mode, payload, hash, last_error,
	answer, merged_into, covers, superseded_by, created_at, updated_at,
	state != 'done' AND state != 'merged' AND state != 'superseded'
FROM outbox ORDER BY seq;

-- seq is never reused: carry the old table's high-water mark over.
INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox_new', 0
	WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox_new');
UPDATE sqlite_sequence SET seq = (SELECT max(seq) FROM sqlite_sequence WHERE name IN ('outbox', 'outbox_new'))
	WHERE name = 'outbox_new';

DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;

-- A document's entries in order, whatever their state (listing, `outbox ls --doc`).
CREATE INDEX outbox_doc_order ON outbox (doc_id, order_key);

-- Claiming walks the rows that may be sent, in order-key order; the partial index keeps that
-- walk independent of how many done rows the table holds.
CREATE INDEX outbox_ready ON outbox (order_key, seq) WHERE state IN ('pending', 'deferred');

-- The open rows of a document, in order: "is this the document's first open entry?" and
-- "has this local id an open post?" are single index probes.
CREATE INDEX outbox_open ON outbox (doc_id, order_key, seq) WHERE open = 1;

-- The results query's worklist, and when the next deferred entry is due.
CREATE INDEX outbox_uncertain ON outbox (seq) WHERE state = 'uncertain';
CREATE INDEX outbox_deferred ON outbox (next_attempt_at) WHERE state = 'deferred';

-- Pruning, and the foreign keys of merged_into / superseded_by (a DELETE checks the rows that
-- point at the deleted one).
CREATE INDEX outbox_final ON outbox (updated_at) WHERE open = 0;
CREATE INDEX outbox_merged_into ON outbox (merged_into) WHERE merged_into IS NOT NULL;
CREATE INDEX outbox_superseded_by ON outbox (superseded_by) WHERE superseded_by IS NOT NULL;

-- id_map lookups by the id a local id now maps to (collapsing chains when a parent is renamed).
CREATE INDEX id_map_erp5 ON id_map (erp5_id);
