# -*- coding: utf-8 -*-
"""Sync gateway batch receiver for ERP5: the pure-Python core.

This module implements the receiver half of the protocol (docs/DESIGN.md §7, erp5/README.md): the
capability document, the batch receiver with exact (gateway, epoch, seq) deduplication,
``covers``, write-key deduplication, per-entry savepoints and field-level conflicts, the
results query and the changes query.

It imports nothing from Zope or ERP5. Everything site-specific goes through two objects the
caller supplies:

* ``site``: the documents, with the methods ``getState``, ``newContent``, ``edit``,
  ``transition``, ``savepoint``, ``rollback`` and ``searchChanges`` (see ``Site``);
* ``storage``: a mapping-like store for the receiver's records (see ``Storage``); in ERP5 an
  OOBTree written in the same transaction as the changes, never the catalog.

The core never commits. It re-raises the exception types given as ``conflict_errors``
(ZODB's ConflictError in ERP5) instead of recording them as rejections, so Zope retries the
whole request and a resend racing the first one cannot apply twice.

The module runs under plain ``python3`` (and is written to load under Python 2.7 too); the
extension in ``extension/SyncGatewayReceiver.py`` adapts it to ERP5. The test vectors in
``testdata/`` are replayed against it by ``test_receiver.py`` and against the Go double by
``erp5sim``'s tests.
"""

import base64
import json
import re
import time
import zlib

try:  # zstd is optional: Python 3.14's compression.zstd, else the zstandard package.
    from compression import zstd as _zstd  # type: ignore

    def _zstd_decompress(data, limit):
        return _zstd.decompress(data)

    def _zstd_compress(data):
        return _zstd.compress(data)

    HAVE_ZSTD = True
except ImportError:  # pragma: no cover - depends on the interpreter
    try:
        import zstandard as _zstandard  # type: ignore

        def _zstd_decompress(data, limit):
            return _zstandard.ZstdDecompressor().decompress(data, max_output_size=limit + 1)

        def _zstd_compress(data):
            return _zstandard.ZstdCompressor().compress(data)

        HAVE_ZSTD = True
    except ImportError:
        HAVE_ZSTD = False

try:
    string_types = (str, unicode)  # noqa: F821 (Python 2)
    integer_types = (int, long)  # noqa: F821
except NameError:
    string_types = (str,)
    integer_types = (int,)

PROTOCOL_VERSION = 1
DEFAULT_MAX_ENTRIES = 1000
DEFAULT_MAX_BATCH_BYTES = 1 << 20  # compressed request body
DEFAULT_RETENTION_DAYS = 90
MAX_DECODED_BYTES = 64 << 20  # a decompressed body above this is refused (413)
MAX_RESULT_SEQS = 100000  # a results query naming more seqs is refused (413)
DEFAULT_CHANGES_LIMIT = 100
MAX_CHANGES_LIMIT = 1000
# The changes query re-reads this much of the catalog behind its cursor: the longest time an
# indexing transaction may take between stamping indexation_timestamp and committing.
DEFAULT_OVERLAP_SECONDS = 600
DEFAULT_PURGE_CHUNK = 1000  # records deleted per purge transaction

# Properties no entry may set: identity, dates and workflow state variables. portal_type is
# handled apart: repeating the document's own portal type is allowed and ignored.
PROTECTED = frozenset([
    "id", "relative_url", "parent_relative_url", "uid",
    "creation_date", "modification_date",
    "validation_state", "simulation_state",
])

OPS = ("post", "put", "remove", "action")

_DIGITS = re.compile(r"^[0-9]{1,18}$")


class ReceiverError(Exception):
    """A whole-request failure: an HTTP status, an error code and a message."""

    def __init__(self, status, code, message):
        Exception.__init__(self, message)
        self.status = status
        self.code = code
        self.message = message


def bad_request(message):
    return ReceiverError(400, "invalid", message)


class Rejected(Exception):
    """Raised by a site callback to reject an entry with a reason word.

    Reasons: ``not_found`` (no such document), ``invalid`` (a value or request the site
    refuses), ``not_allowed`` (a workflow transition not available in the current state).
    Any other exception from a callback, except a conflict error, rejects with ``invalid``.
    """

    def __init__(self, reason, message):
        Exception.__init__(self, message)
        self.reason = reason
        self.message = message


class InvalidQuery(Exception):
    """Raised by ``Site.searchChanges`` for a query it cannot parse (answered 400)."""


class Site(object):
    """The interface the core expects from the site. Documents are named by relative URL.

    ``getState(doc_id)`` returns None or a dict with ``id``, ``portal_type``, ``version``
    (the modification time at full precision), ``modification_date`` (RFC 822) and
    ``properties`` (a dict of JSON values).

    ``newContent(portal_type, parent_relative_url, fields)`` creates a document, sets its
    fields and returns its relative URL. ``edit(doc_id, fields)`` sets properties (None
    clears). ``transition(doc_id, transition, comment)`` runs a workflow transition.

    ``savepoint()`` returns a token; ``rollback(token)`` undoes everything since it.

    ``searchChanges(portal_type, query, after, limit)`` returns at most ``limit`` catalog
    candidates changed after the position ``after`` (None: from the start), oldest first,
    matching the portal type ("" for any) and the jIO query ("" for all), each a dict with
    ``id`` and ``key``, a JSON-serialisable position to resume after. Keys must compare
    with Python's ordering as the catalog orders them (numbers, or lists of numbers and
    strings).

    ``overlapStart(key, seconds)`` (optional) returns the position to search after so that
    every row indexed up to ``seconds`` before ``key`` is read again: the changes query
    re-reads that window to catch indexing transactions that committed late. A site
    without it gets no window.
    """


class Storage(object):
    """The receiver's records: ``get(key)`` returns the value or None, ``set(key, value)``.

    Keys are tuples of strings and integers; values are JSON-serialisable dicts.
    """

    def get(self, key):
        raise NotImplementedError

    def set(self, key, value):
        raise NotImplementedError


class MemoryStorage(Storage):
    """Storage in a dict, for tests."""

    def __init__(self):
        self.data = {}

    def get(self, key):
        return self.data.get(key)

    def set(self, key, value):
        self.data[key] = value


def _micros(seconds):
    return int(round(seconds * 1000000))


class TreeStorage(Storage):
    """The records in two ordered trees (OOBTrees in ERP5, written in the request's own
    transaction): ``records`` maps a flat string key to the record as JSON text, with the
    time it was written (``at``, microseconds since the epoch); ``by_time`` maps
    ``"<at, 16 digits>\x00<key>"`` to "" so that a purge walks the oldest records first
    without reading the others. ``clock`` returns the current time in seconds.
    """

    def __init__(self, records, by_time, clock=None):
        self.records = records
        self.by_time = by_time
        self.clock = clock or time.time

    @staticmethod
    def flat_key(key):
        """The tree key of a record key: parts joined by NUL, integers zero-padded so that
        they sort numerically."""
        return "\x00".join("%020d" % k if _is_int(k) else k for k in key)

    @staticmethod
    def _time_key(at, flat):
        return "%016d\x00%s" % (at, flat)

    def get(self, key):
        value = self.records.get(self.flat_key(key))
        if value is None:
            return None
        value = json.loads(value)
        value.pop("at", None)
        return value

    def set(self, key, value):
        flat = self.flat_key(key)
        old = self.records.get(flat)
        if old is not None:
            at = json.loads(old).get("at")
            if at is not None:
                self.by_time.pop(self._time_key(at, flat), None)
        at = _micros(self.clock())
        self.records[flat] = json.dumps(dict(value, at=at), sort_keys=True, separators=(",", ":"))
        self.by_time[self._time_key(at, flat)] = ""

    def index_untimed(self, limit):
        """Gives records written before ``by_time`` existed the current time, at most limit
        of them; returns how many it indexed (0 when none is left)."""
        at = _micros(self.clock())
        n = 0
        for flat in self.records.keys():
            value = json.loads(self.records[flat])
            if "at" in value:
                continue
            value["at"] = at
            self.records[flat] = json.dumps(value, sort_keys=True, separators=(",", ":"))
            self.by_time[self._time_key(at, flat)] = ""
            n += 1
            if n >= limit:
                break
        return n

    def purge(self, before, limit):
        """Deletes at most limit records written before the time ``before`` (seconds),
        oldest first. Returns (deleted, more): more is true when older records remain."""
        stop = "%016d" % _micros(before)
        doomed = []
        for tkey in self.by_time.keys():
            if tkey >= stop:
                break
            if len(doomed) == limit:
                return self._delete(doomed), True
            doomed.append(tkey)
        return self._delete(doomed), False

    def _delete(self, time_keys):
        for tkey in time_keys:
            del self.by_time[tkey]
            self.records.pop(tkey.split("\x00", 1)[1], None)
        return len(time_keys)


class Response(object):
    """An HTTP answer: status, headers (a dict) and body (bytes)."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self):
        return "Response(%d, %r, %r)" % (self.status, self.headers, self.body[:200])


def dumps(value):
    """Serialises a JSON answer: UTF-8, compact, keys sorted."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _is_int(v):
    return isinstance(v, integer_types) and not isinstance(v, bool)


def _normalize(v):
    if v == "":
        return None
    return v


def values_equal(a, b):
    """Compares property values for conflicts: None, "" and absent are equal; numbers
    compare by value; lists and objects element by element."""
    a, b = _normalize(a), _normalize(b)
    if a is None or b is None:
        return a is None and b is None
    a_num = isinstance(a, (float,) + integer_types) and not isinstance(a, bool)
    b_num = isinstance(b, (float,) + integer_types) and not isinstance(b, bool)
    if a_num or b_num:
        return a_num and b_num and a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, string_types) or isinstance(b, string_types):
        return isinstance(a, string_types) and isinstance(b, string_types) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(values_equal(a[k], b[k]) for k in a)
    return False


def parse_seqs(text):
    """Parses "10423,10424,10500-10650" into a sorted list without repeats."""
    if text is None or not text.strip():
        raise bad_request("seqs is required")
    seqs = set()
    total = 0
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        lo, hi = lo.strip(), hi.strip()
        if not _DIGITS.match(lo) or sep and not _DIGITS.match(hi):
            raise bad_request("bad seqs item %r" % part)
        a = int(lo)
        b = int(hi) if sep else a
        if b < a:
            raise bad_request("bad seqs item %r" % part)
        total += b - a + 1
        if total > MAX_RESULT_SEQS:
            raise ReceiverError(413, "too_large", "more than %d seqs" % MAX_RESULT_SEQS)
        seqs.update(range(a, b + 1))
    return sorted(seqs)


def encode_cursor(key):
    raw = json.dumps(key, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor):
    """Returns (position, keys examined in the overlap window behind it). A cursor of the
    first format (a bare position, before the overlap window) reads as having none."""
    try:
        pad = "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode((cursor + pad).encode("ascii")).decode("utf-8"))
    except Exception:
        raise bad_request("bad cursor")
    if isinstance(value, dict):
        if set(value) != set(["a", "s"]) or not isinstance(value["s"], list):
            raise bad_request("bad cursor")
        return value["a"], value["s"]
    return value, []


class Receiver(object):
    """The receiver: one instance per request is fine (it keeps no state of its own)."""

    def __init__(self, site, storage, max_entries=DEFAULT_MAX_ENTRIES,
                 max_batch_bytes=DEFAULT_MAX_BATCH_BYTES,
                 retention_days=DEFAULT_RETENTION_DAYS, encodings=None,
                 conflict_errors=(), overlap_seconds=DEFAULT_OVERLAP_SECONDS, clock=None):
        self.site = site
        self.storage = storage
        self.max_entries = max_entries
        self.max_batch_bytes = max_batch_bytes
        self.retention_days = retention_days
        if encodings is None:
            encodings = ["zstd", "gzip"]
        # zstd is advertised only where this Python can decode it.
        self.encodings = [e for e in encodings if e != "zstd" or HAVE_ZSTD]
        self.conflict_errors = tuple(conflict_errors)
        self.overlap_seconds = overlap_seconds
        self.clock = clock or time.time

    # -- HTTP-shaped entry points ------------------------------------------------------

    def capability(self):
        return {
            "version": PROTOCOL_VERSION,
            "encodings": list(self.encodings),
            "max_batch_bytes": self.max_batch_bytes,
            "max_entries": self.max_entries,
            "retention_days": self.retention_days,
        }

    def http_capability(self):
        return Response(200, {"Content-Type": "application/json"}, dumps(self.capability()))

    def http_batch(self, body, content_encoding=None):
        """Answers a POST of ERP5Site_receiveSyncGatewayBatch."""
        return self._http_json(body, content_encoding, self.receive)

    def http_changes(self, body, content_encoding=None):
        """Answers a POST of ERP5Site_getSyncGatewayChanges."""
        return self._http_json(body, content_encoding, self.changes)

    def http_results(self, gateway, epoch, seqs):
        """Answers a GET of ERP5Site_getSyncGatewayResults."""
        try:
            value = self.results(gateway, epoch, seqs)
        except ReceiverError as e:
            return self._error(e)
        return Response(200, {"Content-Type": "application/json"}, dumps(value))

    def _http_json(self, body, content_encoding, handler):
        try:
            encoding = self._check_encoding(content_encoding)
            request = self._decode(body, encoding)
            value = handler(request)
        except ReceiverError as e:
            return self._error(e)
        headers = {"Content-Type": "application/json"}
        data = dumps(value)
        if encoding:
            headers["Content-Encoding"] = encoding
            data = self._encode(data, encoding)
        return Response(200, headers, data)

    @staticmethod
    def _error(e):
        return Response(e.status, {"Content-Type": "application/json"},
                        dumps({"error": e.code, "message": e.message}))

    def _check_encoding(self, content_encoding):
        encoding = (content_encoding or "").strip().lower()
        if encoding == "identity":
            encoding = ""
        if encoding and encoding not in self.encodings:
            raise ReceiverError(415, "unsupported_encoding",
                                "content encoding %s is not supported" % encoding)
        return encoding

    def _decode(self, body, encoding):
        if len(body) > self.max_batch_bytes:
            raise ReceiverError(413, "too_large", "body larger than %d bytes" % self.max_batch_bytes)
        too_large = ReceiverError(413, "too_large", "decoded body too large")
        if encoding == "gzip":
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                data = d.decompress(body, MAX_DECODED_BYTES + 1)
                if len(data) > MAX_DECODED_BYTES or d.unconsumed_tail:
                    raise too_large
                data += d.flush()
            except zlib.error as e:
                raise bad_request("gzip: %s" % e)
            if not d.eof:
                raise bad_request("gzip: truncated stream")
        elif encoding == "zstd":
            try:
                data = _zstd_decompress(body, MAX_DECODED_BYTES)
            except Exception as e:
                raise bad_request("zstd: %s" % e)
            if len(data) > MAX_DECODED_BYTES:
                raise too_large
        else:
            data = body
        try:
            value = json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise bad_request("body is not JSON: %s" % e)
        if not isinstance(value, dict):
            raise bad_request("body is not a JSON object")
        return value

    @staticmethod
    def _encode(data, encoding):
        if encoding == "gzip":
            c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            return c.compress(data) + c.flush()
        if encoding == "zstd":
            return _zstd_compress(data)
        return data

    # -- the batch -----------------------------------------------------------------------

    def receive(self, request):
        """Applies a decoded batch and returns {"results": [...]}, one per entry, in seq
        order. Raises ReceiverError for a malformed batch (400) or one too large (413)."""
        gateway, epoch, entries = self._parse_batch(request)
        if len(entries) > self.max_entries:
            raise ReceiverError(413, "too_large", "%d entries, at most %d per batch"
                                % (len(entries), self.max_entries))
        entries = sorted(entries, key=lambda e: e["seq"])  # stable: repeats keep their order
        return {"results": [self._receive_entry(gateway, epoch, e) for e in entries]}

    @staticmethod
    def _parse_batch(request):
        gateway, epoch = request.get("gateway"), request.get("epoch")
        if not isinstance(gateway, string_types) or not gateway or \
                not isinstance(epoch, string_types) or not epoch:
            raise bad_request("gateway and epoch are required strings")
        entries = request.get("entries")
        if not isinstance(entries, list):
            raise bad_request("entries must be a list")
        out = []
        for i, e in enumerate(entries):
            if not isinstance(e, dict):
                raise bad_request("entry %d is not an object" % i)
            seq = e.get("seq")
            if not _is_int(seq) or seq < 0:
                raise bad_request("entry %d: seq must be a non-negative integer" % i)
            if not isinstance(e.get("hash"), string_types) or not e.get("hash"):
                raise bad_request("entry %d: hash is required" % i)
            entry = {"seq": seq, "hash": e["hash"]}
            for k in ("op", "id", "portal_type", "parent_relative_url", "transition",
                      "comment", "peer", "key"):
                v = e.get(k)
                if v is not None and not isinstance(v, string_types):
                    raise bad_request("entry %d: %s must be a string" % (i, k))
                entry[k] = v or ""
            for k in ("fields", "base"):
                v = e.get(k)
                if v is not None and not isinstance(v, dict):
                    raise bad_request("entry %d: %s must be an object" % (i, k))
                entry[k] = v or {}
            covers = e.get("covers")
            if covers is None:
                covers = []
            if not isinstance(covers, list) or not all(_is_int(c) for c in covers):
                raise bad_request("entry %d: covers must list integers" % i)
            entry["covers"] = covers
            keys = e.get("keys")
            if keys is None:
                keys = []
            if not isinstance(keys, list) or not all(
                    isinstance(k, dict) and
                    all(k.get(m) is None or isinstance(k.get(m), string_types) for m in ("peer", "key"))
                    for k in keys):
                raise bad_request("entry %d: keys must list objects with string peer and key" % i)
            entry["keys"] = [(k.get("peer") or "", k.get("key") or "") for k in keys]
            out.append(entry)
        return gateway, epoch, out

    def _receive_entry(self, gateway, epoch, e):
        """Deduplicates and applies one entry. The order of the checks is the contract:
        exact (epoch, seq) membership, then covers, then the write key, then the change.
        The result is also remembered under each folded write key of ``keys`` that has no
        record yet."""
        seq = e["seq"]
        key = ("seq", gateway, epoch, seq)
        record = self.storage.get(key)
        if record is not None:
            if record["hash"] == e["hash"]:
                return dict(record["result"])
            return {"seq": seq, "status": "seq_reused"}
        for c in e["covers"]:
            if c != seq and self.storage.get(("seq", gateway, epoch, c)) is not None:
                return {"seq": seq, "status": "seq_reused"}
        write_key = None
        if e["peer"] and e["key"]:
            write_key = ("key", gateway, e["peer"], e["key"])
        first = self.storage.get(write_key) if write_key else None
        if first is not None:
            result = dict(first["result"], seq=seq)
        else:
            result = self._apply(gateway, e)
            if write_key:
                self.storage.set(write_key, {"result": result})
        for peer, k in e["keys"]:
            folded = ("key", gateway, peer, k)
            if peer and k and self.storage.get(folded) is None:
                self.storage.set(folded, {"result": result})
        self.storage.set(key, {"hash": e["hash"], "result": result})
        for c in e["covers"]:
            if c != seq:
                # A folded seq holds the covering entry's payload: its hash.
                self.storage.set(("seq", gateway, epoch, c), {"hash": e["hash"], "result": dict(result, seq=c)})
        return dict(result)

    @staticmethod
    def _rejected(seq, reason, message):
        return {"seq": seq, "status": "rejected", "reason": reason, "message": message}

    @staticmethod
    def _check_protected(fields, portal_type):
        """Returns the fields to edit, or raises Rejected for a protected one."""
        fields = dict(fields)
        if "portal_type" in fields:
            if fields["portal_type"] != portal_type:
                raise Rejected("invalid", "portal_type cannot be changed")
            del fields["portal_type"]
        for k in sorted(fields):
            if k in PROTECTED:
                raise Rejected("invalid", "%s cannot be edited" % k)
        return fields

    def _apply(self, gateway, e):
        """Applies one entry's change in its own savepoint and returns its result."""
        seq, op, site = e["seq"], e["op"], self.site
        if op not in OPS:
            return self._rejected(seq, "invalid", "unknown op %r" % op)
        if op == "post":
            if not e["portal_type"] or not e["parent_relative_url"]:
                return self._rejected(seq, "invalid", "post needs portal_type and parent_relative_url")
            try:
                fields = self._check_protected(e["fields"], e["portal_type"])
            except Rejected as r:
                return self._rejected(seq, r.reason, r.message)
        else:
            if not e["id"]:
                return self._rejected(seq, "invalid", "%s needs an id" % op)
            if op == "action" and not e["transition"]:
                return self._rejected(seq, "invalid", "action needs a transition")
            state = site.getState(e["id"])
            if state is None:
                return self._rejected(seq, "not_found", "no document %s" % e["id"])
            fields = {}
            if op != "remove":
                current = self._conflicts(state, e["fields"], e["base"])
                if current:
                    return {"seq": seq, "status": "conflict", "id": state["id"],
                            "current": current, "version": state["version"]}
                try:
                    fields = self._check_protected(e["fields"], state["portal_type"])
                except Rejected as r:
                    return self._rejected(seq, r.reason, r.message)
        savepoint = site.savepoint()
        try:
            if op == "post":
                doc_id = site.newContent(e["portal_type"], e["parent_relative_url"], fields)
            else:
                doc_id = e["id"]
                if fields:
                    site.edit(doc_id, fields)
                if op == "remove":
                    site.transition(doc_id, "delete_action", e["comment"])
                elif op == "action":
                    site.transition(doc_id, e["transition"], e["comment"])
        except self.conflict_errors:
            raise
        except Rejected as r:
            site.rollback(savepoint)
            return self._rejected(seq, r.reason, r.message)
        except Exception as x:
            site.rollback(savepoint)
            return self._rejected(seq, "invalid", "%s" % (x,))
        state = site.getState(doc_id)
        self.storage.set(("own", gateway, state["id"]), {"version": state["version"]})
        return {"seq": seq, "status": "ok", "id": state["id"], "version": state["version"],
                "modification_date": state["modification_date"], "state": self._state(state)}

    @staticmethod
    def _state(state):
        s = dict(state["properties"])
        s["portal_type"] = state["portal_type"]
        return s

    @staticmethod
    def _conflicts(state, fields, base):
        """The current values of the fields that conflict, or None: a field conflicts when
        its current value differs from both its base and its new value."""
        current = {}
        props = state["properties"]
        for k, v in fields.items():
            if k == "portal_type":
                continue
            cur = props.get(k)
            if not values_equal(cur, base.get(k)) and not values_equal(cur, v):
                current[k] = cur
        return current or None

    # -- queries ---------------------------------------------------------------------

    def results(self, gateway, epoch, seqs):
        """Returns the stored results of seqs ("1,2,5-9"); "unknown" for one never seen."""
        if not gateway or not epoch:
            raise bad_request("gateway and epoch are required")
        out = []
        for n in parse_seqs(seqs):
            record = self.storage.get(("seq", gateway, epoch, n))
            if record is None:
                out.append({"seq": n, "status": "unknown"})
            else:
                result = dict(record["result"])
                if record.get("hash"):
                    result["hash"] = record["hash"]
                out.append(result)
        return {"results": out}

    # -- retention -------------------------------------------------------------------

    def purge(self, limit=DEFAULT_PURGE_CHUNK):
        """Deletes at most limit records older than retention_days, oldest first, and
        returns (deleted, more). Run it in its own transaction, committed before the next
        chunk (an alarm does), never inside a batch: concurrent batches purging the same
        oldest records would always collide."""
        return self.storage.purge(self.clock() - self.retention_days * 86400.0, limit)

    def changes(self, request):
        """Answers a changes query: every scope's changes after its cursor."""
        gateway = request.get("gateway")
        if not isinstance(gateway, string_types) or not gateway:
            raise bad_request("gateway is required")
        limit = request.get("limit")
        if limit is None:
            limit = DEFAULT_CHANGES_LIMIT
        elif not _is_int(limit) or limit <= 0:
            raise bad_request("limit must be a positive integer")
        limit = min(limit, MAX_CHANGES_LIMIT)
        scopes = request.get("scopes")
        if not isinstance(scopes, list):
            raise bad_request("scopes must be a list")
        parsed = []
        for i, sc in enumerate(scopes):
            if not isinstance(sc, dict):
                raise bad_request("scope %d is not an object" % i)
            name = sc.get("name")
            if not isinstance(name, string_types) or not name:
                raise bad_request("scope %d: name is required" % i)
            for k in ("portal_type", "query"):
                if sc.get(k) is not None and not isinstance(sc.get(k), string_types):
                    raise bad_request("scope %s: %s must be a string" % (name, k))
            fields = sc.get("fields")
            if fields is not None and (not isinstance(fields, list) or
                                       not all(isinstance(f, string_types) for f in fields)):
                raise bad_request("scope %s: fields must list strings" % name)
            cursor = sc.get("cursor")
            if cursor is not None and not isinstance(cursor, string_types):
                raise bad_request("scope %s: cursor must be a string or null" % name)
            position = decode_cursor(cursor) if cursor is not None else None
            parsed.append((name, sc.get("portal_type") or "", sc.get("query") or "", fields, cursor, position))
        out = []
        for name, portal_type, query, fields, cursor, position in parsed:
            after, sent = position if position is not None else (None, [])
            # Re-read the overlap window behind the cursor: an indexing transaction that
            # stamped its rows before the cursor's position may have committed since.
            start = self._window_start(after)
            seen = set(_key_text(k) for k in sent)
            try:
                candidates = self.site.searchChanges(portal_type, query, start, limit + len(seen) + 1)
            except InvalidQuery as e:
                raise bad_request("scope %s: query: %s" % (name, e))
            candidates = [c for c in candidates if _key_text(c["key"]) not in seen]
            more = len(candidates) > limit
            examined = candidates[:limit]
            if examined:
                cursor = self._next_cursor(after, sent, [c["key"] for c in examined])
            rows = []
            for c in examined:
                state = self.site.getState(c["id"])
                if state is None:
                    continue
                own = self.storage.get(("own", gateway, state["id"]))
                if own is not None and own["version"] == state["version"]:
                    continue  # this gateway's own change: it has the state already
                values = self._state(state)
                if fields is not None:
                    values = dict((f, values.get(f)) for f in fields)
                rows.append({"id": state["id"], "version": state["version"],
                             "modification_date": state["modification_date"], "fields": values})
            out.append({"name": name, "rows": rows, "cursor": cursor, "more": more})
        return {"scopes": out}

    def _window_start(self, after):
        """The catalog position to read after so that the overlap window is re-read."""
        overlap_start = getattr(self.site, "overlapStart", None)
        if after is None or overlap_start is None or self.overlap_seconds <= 0:
            return after
        return overlap_start(after, self.overlap_seconds)

    def _next_cursor(self, after, sent, examined):
        """The cursor past the examined candidates: the highest position seen, and the keys
        examined inside the overlap window behind it (those are not sent again)."""
        position = after
        for k in examined:
            if position is None or k > position:
                position = k
        start = self._window_start(position)
        keep = {}
        for k in list(sent) + list(examined):
            if start is None or k > start:
                keep[_key_text(k)] = k
        return encode_cursor({"a": position, "s": [keep[t] for t in sorted(keep)]})


def _key_text(key):
    return json.dumps(key, separators=(",", ":"), sort_keys=True)
