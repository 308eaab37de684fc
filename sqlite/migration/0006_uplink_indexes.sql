-- Indexes for the uplink's drain of a large backlog.
--
-- When ERP5 numbers a locally created document, the settle renames every reference to its
-- local id (docs/DESIGN.md §6, invariant 4): in the replica's bodies and in the never-sent outbox
-- rows. Both searches used to read every row (a byte search per body or per row), once per
-- created document: a thousand creates read the table a thousand times. These partial
-- indexes hold only the rows that name some local id ("local-" is the mark of every local
-- id's last segment), so a rename reads those few rows. The queries repeat each WHERE
-- expression exactly, or SQLite would not use the index.

-- Documents whose body names a local id (a reference, a parent).
CREATE INDEX documents_local_refs ON documents (id) WHERE instr(body, X'6c6f63616c2d') > 0;

-- Never-sent open outbox rows naming a local id other than through their own document id
-- (their parent, a field value, a base). Rows whose own document is local are found through
-- outbox_open by id.
CREATE INDEX outbox_local_refs ON outbox (seq)
	WHERE open = 1 AND attempts = 0 AND instr(parent_id || coalesce(fields, '') || coalesce(base, ''), 'local-') > 0;

-- The open rows by state: counting them (status notifications, metrics, `sync status`) reads
-- this index alone instead of every open row, which during a week's backlog cost a second
-- of CPU per count.
CREATE INDEX outbox_open_state ON outbox (state) WHERE open = 1;
