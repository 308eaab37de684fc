-- The gateway's tables. Times are UTC text in the fixed-width layout
-- 2006-01-02T15:04:05.000000000Z so that text order is time order.

CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) STRICT;

-- The replica. rowid is the order documents were first stored (jIO's order without sort_on).
-- body is JSONB exactly as given; upstream_body the last state ERP5 confirmed (NULL for a
-- document ERP5 has never seen); upstream_version ERP5's modification time at full precision.
-- A removed document stays as a tombstone (deleted = 1) until ERP5 confirms, so that an
-- operator's drop can revert it.
CREATE TABLE documents (
	rowid            INTEGER PRIMARY KEY,
	id               TEXT NOT NULL UNIQUE,
	portal_type      TEXT,
	body             BLOB NOT NULL,
	upstream_body    BLOB,
	upstream_version TEXT,
	deleted          INTEGER NOT NULL DEFAULT 0,
	updated_at       TEXT NOT NULL
) STRICT;

-- The outbox (DESIGN §6). One row per accepted write.
CREATE TABLE outbox (
	seq             INTEGER PRIMARY KEY AUTOINCREMENT,
	epoch           TEXT NOT NULL,
	site_id         TEXT NOT NULL DEFAULT '',
	order_key       INTEGER NOT NULL,
	op              TEXT NOT NULL CHECK (op IN ('post', 'put', 'remove', 'action')),
	doc_id          TEXT NOT NULL,
	portal_type     TEXT NOT NULL DEFAULT '',
	parent_id       TEXT NOT NULL DEFAULT '',
	fields          TEXT,            -- JSON object: the changed fields' new values
	base            TEXT,            -- JSON object: the same fields' values before the edit
	transition      TEXT NOT NULL DEFAULT '',
	comment         TEXT NOT NULL DEFAULT '',
	peer            TEXT NOT NULL DEFAULT '',
	write_key       TEXT NOT NULL DEFAULT '',
	state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'inflight', 'done',
	                    'deferred', 'uncertain', 'held', 'dead', 'conflict', 'merged', 'superseded')),
	attempts        INTEGER NOT NULL DEFAULT 0,
	next_attempt_at TEXT,
	mode            TEXT NOT NULL DEFAULT '',   -- 'batch' or 'stock': how it was first sent
	payload         BLOB,                       -- the exact bytes it was first sent with
	hash            TEXT NOT NULL DEFAULT '',
	last_error      TEXT NOT NULL DEFAULT '',
	answer          TEXT,                       -- ERP5's answer, JSON
	merged_into     INTEGER REFERENCES outbox(seq),
	covers          TEXT,                       -- JSON array of folded seqs, transitively
	superseded_by   INTEGER REFERENCES outbox(seq),
	created_at      TEXT NOT NULL,
	updated_at      TEXT NOT NULL
) STRICT;
CREATE INDEX outbox_state_order ON outbox (state, order_key);
CREATE INDEX outbox_doc_order ON outbox (doc_id, order_key);

-- Local ids ERP5 has numbered.
CREATE TABLE id_map (
	local_id   TEXT PRIMARY KEY,
	erp5_id    TEXT NOT NULL,
	created_at TEXT NOT NULL
) STRICT;

-- Write keys (DESIGN §3): a repeated key answers the first response.
CREATE TABLE write_keys (
	peer         TEXT NOT NULL,
	key          TEXT NOT NULL,
	request_hash TEXT NOT NULL,
	response     TEXT NOT NULL,
	created_at   TEXT NOT NULL,
	PRIMARY KEY (peer, key)
) STRICT;
CREATE INDEX write_keys_created ON write_keys (created_at);

-- Paired peers; tokens stored hashed.
CREATE TABLE peers (
	name       TEXT PRIMARY KEY,
	role       TEXT NOT NULL,
	token_hash TEXT NOT NULL UNIQUE,
	created_at TEXT NOT NULL,
	last_seen  TEXT,
	address    TEXT NOT NULL DEFAULT '',
	revoked_at TEXT
) STRICT;

-- One-time pairing codes, stored hashed.
CREATE TABLE invites (
	code_hash  TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	role       TEXT NOT NULL,
	created_at TEXT NOT NULL,
	expires_at TEXT NOT NULL,
	used_at    TEXT
) STRICT;

-- The downlink's cursors, one per scope.
CREATE TABLE sync_cursors (
	scope      TEXT PRIMARY KEY,
	cursor     TEXT,
	complete   INTEGER NOT NULL DEFAULT 0,
	fresh_at   TEXT,
	updated_at TEXT NOT NULL
) STRICT;

-- What operators did to the queue and the replica.
CREATE TABLE audit (
	id     INTEGER PRIMARY KEY,
	at     TEXT NOT NULL,
	actor  TEXT NOT NULL,
	action TEXT NOT NULL,
	detail TEXT NOT NULL
) STRICT;
