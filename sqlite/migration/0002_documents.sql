-- The replica's "=" index (sqlite/compile.go). For every top-level property of a document and
-- every element of it (a list stands for its elements), doc_keys holds the property's key
-- and the element's string form as jIO's "=" compares it (query.StringForm: a string itself,
-- a number in JavaScript's form, true or false). Null, objects, nested lists and keys or forms
-- longer than 200 bytes are not indexed: a query needing one of those scans instead.
--
-- jio_index(body), a Go function registered by package sqlite, returns those pairs as a JSONB
-- object whose members are the pairs (a key appears once per form). The triggers keep
-- doc_keys right whatever code writes the documents table with plain SQL, in a process that
-- links package sqlite. Rows are removed by recomputing them from the old body, which saves a
-- second index on doc; so jio_index must never change its answer for a stored body without a
-- migration that rebuilds doc_keys (DELETE FROM doc_keys; INSERT … FROM doc_entries).
-- Tombstones keep their rows: queries join on documents and skip deleted ones.
CREATE TABLE doc_keys (
	key   TEXT NOT NULL,
	value TEXT NOT NULL,
	doc   INTEGER NOT NULL,
	PRIMARY KEY (key, value, doc)
) STRICT, WITHOUT ROWID;

-- The pairs of every document.
CREATE VIEW doc_entries (doc, key, value) AS
	SELECT d.rowid, e.key, e.value FROM documents d, json_each(jio_index(d.body)) e;

-- A row here suspends the insert trigger. Only a bulk load sets it, inside its own write
-- transaction, and indexes the rows it inserted itself before it clears it and commits; so no
-- other connection ever sees it set. (Indexing a chunk at once costs half as much as row by
-- row: sqlite/import.go.)
CREATE TABLE doc_keys_deferred (
	x INTEGER PRIMARY KEY
) STRICT;

CREATE TRIGGER documents_keys_insert AFTER INSERT ON documents
WHEN NOT EXISTS (SELECT 1 FROM doc_keys_deferred)
BEGIN
	INSERT OR IGNORE INTO doc_keys (key, value, doc)
		SELECT e.key, e.value, NEW.rowid FROM json_each(jio_index(NEW.body)) e;
END;

CREATE TRIGGER documents_keys_update AFTER UPDATE OF body, rowid ON documents
WHEN OLD.body IS NOT NEW.body OR OLD.rowid IS NOT NEW.rowid
BEGIN
	DELETE FROM doc_keys WHERE (key, value, doc) IN
		(SELECT e.key, e.value, OLD.rowid FROM json_each(jio_index(OLD.body)) e);
	INSERT OR IGNORE INTO doc_keys (key, value, doc)
		SELECT e.key, e.value, NEW.rowid FROM json_each(jio_index(NEW.body)) e;
END;

CREATE TRIGGER documents_keys_delete AFTER DELETE ON documents
BEGIN
	DELETE FROM doc_keys WHERE (key, value, doc) IN
		(SELECT e.key, e.value, OLD.rowid FROM json_each(jio_index(OLD.body)) e);
END;
