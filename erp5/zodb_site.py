# -*- coding: utf-8 -*-
"""The receiver core over persistent documents, for the tests: documents, records and
transactions as ERP5 has them, on the real ``persistent``, ``BTrees`` and ``transaction``
packages and the ZODB stand-in of ``zodb_standin``.

* ``Document``: a ``persistent.Persistent`` with a portal type, properties and a
  modification time; stored in an ``OOBTree`` by relative URL, so two requests touching one
  document collide as they would in ERP5 (ConflictError), while two requests touching
  different documents merge through the BTree buckets' real conflict resolution.
* ``ZODBSite``: the core's ``Site`` interface over those documents with the double's rules
  (``fake_site``: portal types, field types, workflows, ids); savepoints are real
  ``transaction.savepoint()`` calls.
* ``Catalog``: indexes committed documents after commit (an after-commit hook of the real
  transaction), in commit order.
* ``Publisher``: one thread's request handling as Zope's publisher does it: begin a
  transaction, call the receiver, commit; a ConflictError aborts and retries the whole
  request up to ``retries`` times, then answers 503.

Test code, never installed in ERP5.
"""

import copy
import datetime
import json
import threading

import transaction
from BTrees.OOBTree import OOBTree
from persistent import Persistent

import sync_gateway_receiver as core
from fake_site import (MICRO, Rejected, _strict_equal, field_type, coerce, format_rfc822,
                       format_version, parse_version, workflow)
from zodb_standin import ConflictError

RETRIES = 3  # Zope's publisher retries a request that raised ConflictError 3 times


class Document(Persistent):
    """An ERP5 document: portal type, properties (a dict, rewritten whole on change),
    modification time (a naive UTC datetime) and history: every edit's fields and every
    transition, in order, as ERP5's edit and workflow histories keep them."""

    def __init__(self, doc_id, portal_type, properties, modified):
        self.id = doc_id
        self.portal_type = portal_type
        self.properties = dict(properties)
        self.modified = modified
        self.history = ()

    def set_properties(self, properties):
        self.properties = properties

    def log(self, what):
        self.history = self.history + (what,)


def install(root):
    """Creates the site's trees in a fresh database root (in the current transaction)."""
    root["documents"] = OOBTree()
    root["last_ids"] = OOBTree()
    root["records"] = OOBTree()
    root["records_by_time"] = OOBTree()


class Catalog(object):
    """Committed documents in commit order: (serial, id, version). Shared by all threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self.serial = 0
        self.rows = {}  # id -> (serial, version)

    def index(self, doc_id, version):
        with self._lock:
            row = self.rows.get(doc_id)
            if row is not None and row[1] == version:
                return
            self.serial += 1
            self.rows[doc_id] = (self.serial, version)

    def unindex(self, doc_id):
        with self._lock:
            self.rows.pop(doc_id, None)

    def search(self, after, limit):
        with self._lock:
            rows = sorted((s, i) for i, (s, _) in self.rows.items() if after is None or s > after)
        return rows[:limit] if limit is not None else rows


class ZODBSite(object):
    """The core's Site over the persistent documents of one connection's root."""

    def __init__(self, root, clock, catalog, txn_manager):
        self.documents = root["documents"]
        self.last_ids = root["last_ids"]
        self.clock = clock
        self.catalog = catalog
        self.tm = txn_manager
        self._touched = set()
        self._hooked = False

    # -- helpers -----------------------------------------------------------------------

    def load(self, doc_id, portal_type, version, properties):
        self.documents[doc_id] = Document(doc_id, portal_type, properties, _naive(parse_version(version)))
        self._note_id(doc_id)
        self._touch(doc_id)

    def _note_id(self, doc_id):
        parent, _, last = doc_id.rpartition("/")
        if last.isdigit() and str(int(last)) == last and int(last) > self.last_ids.get(parent, 0):
            self.last_ids[parent] = int(last)

    def _touch(self, doc_id):
        self._touched.add(doc_id)
        if not self._hooked:
            self._hooked = True
            self.tm.get().addAfterCommitHook(self._index_after_commit)

    def _index_after_commit(self, ok):
        touched, self._touched, self._hooked = self._touched, set(), False
        if not ok:
            return
        for doc_id in sorted(touched):
            doc = self.documents.get(doc_id)
            if doc is None:
                self.catalog.unindex(doc_id)
            else:
                self.catalog.index(doc_id, format_version(_aware(doc.modified)))

    def _bump(self, doc):
        t = _naive(self.clock())
        if doc.modified is not None and t <= doc.modified:
            t = doc.modified + MICRO
        doc.modified = t
        self._touch(doc.id)

    # -- Site interface ----------------------------------------------------------------

    def getState(self, doc_id):
        doc = self.documents.get(doc_id)
        if doc is None:
            return None
        modified = _aware(doc.modified)
        return {"id": doc_id, "portal_type": doc.portal_type,
                "version": format_version(modified), "modification_date": format_rfc822(modified),
                "properties": copy.deepcopy(doc.properties)}

    def newContent(self, portal_type, parent_relative_url, fields):
        parent = parent_relative_url
        is_module = "/" not in parent and parent.endswith("_module")
        if not is_module and self.documents.get(parent) is None:
            raise ValueError("no container %s" % parent)
        doc_id = "%s/%d" % (parent, self.last_ids.get(parent, 0) + 1)
        state_var, _ = workflow(portal_type)
        # Created first, then filled, as ERP5's newContent then edit: a bad value leaves a
        # half-made document that only the savepoint's rollback removes.
        doc = Document(doc_id, portal_type, {state_var: "draft"}, None)
        self.documents[doc_id] = doc
        self._note_id(doc_id)
        props = dict(doc.properties)
        for k in sorted(fields):
            props[k] = self._coerce(portal_type, k, fields[k])
            doc.set_properties(dict(props))
        doc.log(("edit", sorted(fields.items())))
        self._bump(doc)
        return doc_id

    @staticmethod
    def _coerce(portal_type, name, value):
        ftype = field_type(portal_type, name)
        if ftype is None:
            return value
        return coerce(ftype, value)

    def edit(self, doc_id, fields):
        doc = self.documents[doc_id]
        props = dict(doc.properties)
        changed = False
        for k in sorted(fields):  # a failure leaves earlier fields set: the savepoint undoes them
            v = self._coerce(doc.portal_type, k, fields[k])
            if k not in props or not _strict_equal(props[k], v):
                changed = True
            props[k] = v
            doc.set_properties(dict(props))
        doc.log(("edit", sorted(fields.items())))
        if changed:
            self._bump(doc)

    def transition(self, doc_id, name, comment):
        doc = self.documents[doc_id]
        state_var, transitions = workflow(doc.portal_type)
        if name not in transitions:
            raise Rejected("not_allowed", "no transition %r for %s" % (name, doc.portal_type))
        sources, target = transitions[name]
        state = doc.properties.get(state_var) or "draft"
        if state not in sources:
            raise Rejected("not_allowed", "transition %r is not available in state %r" % (name, state))
        doc.set_properties(dict(doc.properties, **{state_var: target}))
        doc.log(("transition", name))
        self._bump(doc)

    def savepoint(self):
        return self.tm.get().savepoint()

    def rollback(self, savepoint):
        savepoint.rollback()

    def overlapStart(self, key, seconds):
        """This catalog indexes after commit, in commit order: nothing commits late."""
        return key

    def searchChanges(self, portal_type, query, after, limit):
        from fake_site import compile_query
        match = compile_query(query)
        out = []
        for serial, doc_id in self.catalog.search(after, None):
            doc = self.documents.get(doc_id)
            if doc is None or (portal_type and doc.portal_type != portal_type):
                continue
            if match(dict(doc.properties, portal_type=doc.portal_type)):
                out.append({"id": doc_id, "key": serial})
                if len(out) >= limit:
                    break
        return out


_UTC = datetime.timezone.utc


def _naive(dt):
    return dt.astimezone(_UTC).replace(tzinfo=None)


def _aware(dt):
    return dt.replace(tzinfo=_UTC)


class Publisher(object):
    """One request thread of a Zope instance: its own transaction manager and connection.

    ``publish(handler)`` begins a transaction, calls ``handler(receiver, site)`` (which
    returns a core Response), commits, and returns the response; a ConflictError, raised by
    the handler or by the commit, aborts and retries the whole request up to ``retries``
    times and then answers 503."""

    def __init__(self, store, catalog, clock, retries=RETRIES, receiver_options=None):
        self.tm = transaction.TransactionManager()
        self.conn = store.open(self.tm)
        self.catalog = catalog
        self.clock = clock
        self.retries = retries
        self.receiver_options = receiver_options or {}
        self.conflicts = 0

    def receiver(self):
        root = self.conn.root()
        site = ZODBSite(root, self.clock, self.catalog, self.tm)
        storage = core.TreeStorage(root["records"], root["records_by_time"],
                                   clock=lambda: _seconds(self.clock()))
        return core.Receiver(site, storage, conflict_errors=(ConflictError,),
                             clock=lambda: _seconds(self.clock()), **self.receiver_options), site

    def publish(self, handler, gate=None):
        """``gate`` (tests): an object whose ``before_commit(attempt)`` and
        ``after_commit(attempt)`` run around each attempt's commit, to order commits."""
        attempt = 0
        while True:
            self.tm.begin()
            try:
                receiver, site = self.receiver()
                response = handler(receiver, site)
                if gate is not None:
                    gate.before_commit(attempt)
                try:
                    self.tm.commit()
                finally:
                    if gate is not None:
                        gate.after_commit(attempt)
                return response
            except ConflictError as e:
                self.tm.abort()
                self.conflicts += 1
                if attempt >= self.retries:
                    return core.Response(503, {"Content-Type": "application/json", "Retry-After": "1"},
                                         core.dumps({"error": "conflict", "message": str(e)}))
                attempt += 1
            except BaseException:
                self.tm.abort()
                raise

    def run(self, fn):
        """Runs fn(root) in one committed transaction, without retries."""
        self.tm.begin()
        try:
            result = fn(self.conn.root())
            self.tm.commit()
            return result
        except BaseException:
            self.tm.abort()
            raise


def _seconds(dt):
    return (dt - datetime.datetime(1970, 1, 1, tzinfo=_UTC)).total_seconds()


def json_body(response):
    """The decoded JSON body of a core Response (identity or gzip)."""
    body = response.body
    if response.headers.get("Content-Encoding") == "gzip":
        import gzip
        body = gzip.decompress(body)
    return json.loads(body.decode("utf-8"))
