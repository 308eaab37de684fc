# -*- coding: utf-8 -*-
"""A stand-in for ZODB's DB, Connection and FileStorage, for the receiver's tests.

ZODB itself cannot be installed on the machines that run these tests (no package index, and
no Debian package), but the layers it is built from can: the tests use the real ``BTrees``,
``persistent`` and ``transaction`` packages. This module supplies the one missing piece, as
small as it can be while keeping ZODB's semantics where the receiver depends on them:

* ``VersionedStore`` stands in for the database and its storage: every object's committed
  states as pickles, keyed by object id and transaction id, in memory. One commit at a
  time (FileStorage's commit lock).
* ``Connection`` stands in for ``ZODB.Connection.Connection``: it is the ``_p_jar`` of the
  persistent objects it loads (ghosts, loaded on access through ``setstate``); it joins the
  thread's ``transaction`` as a data manager on the first modification (``register``); it
  reads a snapshot fixed when the transaction begins (MVCC: other connections' commits are
  invisible until the next ``transaction.begin()``, which invalidates changed objects); it
  supports real ``transaction.savepoint()`` and rollback (states kept as pickles, objects
  invalidated and reloaded); and at commit it checks every written object, and every object
  ``readCurrent`` named, against the latest committed serial. A write-write collision is
  first offered to the object's class ``_p_resolveConflict`` (the real BTrees code resolves
  concurrent inserts into one bucket), with the three states unpickled through one
  reference factory as ZODB does; what cannot be resolved raises ``ConflictError``, a
  ``transaction.interfaces.TransientError`` as ZODB's is.

What it does not do: persist anything to disk, pack, garbage-collect, limit its cache, undo,
blobs, or anything multi-process. It is test code, never installed in ERP5.
"""

import importlib
import io
import pickle
import struct
import threading

from persistent import Persistent
from persistent.mapping import PersistentMapping
from transaction.interfaces import TransientError

ROOT_OID = struct.pack(">Q", 0)


def p64(n):
    return struct.pack(">Q", n)


def u64(b):
    return struct.unpack(">Q", b)[0]


class POSError(Exception):
    """Stands for ZODB.POSException.POSError."""


class ConflictError(POSError, TransientError):
    """Stands for ZODB.POSException.ConflictError: two transactions wrote one object (or one
    read an object, through readCurrent, that another changed) and no resolution applied."""

    def __init__(self, message, oid=None):
        POSError.__init__(self, message)
        self.oid = oid


class ReadConflictError(ConflictError):
    """Stands for ZODB.POSException.ReadConflictError (a readCurrent object changed)."""


def _class_path(cls):
    return cls.__module__ + "." + cls.__name__


def _resolve_class(path):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


class _Ref(object):
    """A persistent reference seen during conflict resolution (ZODB's PersistentReference).
    One instance per object id within one resolution, so states compare by identity."""

    def __init__(self, ref):
        self.ref = ref


class VersionedStore(object):
    """The committed states of all objects: the stand-in for ZODB's DB and FileStorage."""

    def __init__(self):
        self._lock = threading.Lock()  # guards the dicts below
        self.commit_lock = threading.Lock()  # one commit at a time, as FileStorage
        self._data = {}  # oid -> [(tid, pickle)], ascending tid
        self._log = []  # [(tid, frozenset(oids))], ascending
        self._last_tid = 0
        self._next_oid = 1
        root = PersistentMapping()
        self._data[ROOT_OID] = [(0, _dump(root, lambda o: None))]

    def new_oid(self):
        with self._lock:
            oid = p64(self._next_oid)
            self._next_oid += 1
            return oid

    def last_tid(self):
        with self._lock:
            return self._last_tid

    def load(self, oid, at):
        """The state of oid as of transaction at: (pickle, tid)."""
        with self._lock:
            history = self._data.get(oid)
            if history:
                for tid, data in reversed(history):
                    if tid <= at:
                        return data, tid
        raise POSError("no object %r as of %d" % (oid, at))

    def latest_serial(self, oid):
        with self._lock:
            history = self._data.get(oid)
            return history[-1][0] if history else None

    def changed_between(self, after, upto):
        """The oids committed by transactions in (after, upto]."""
        with self._lock:
            out = set()
            for tid, oids in self._log:
                if after < tid <= upto:
                    out.update(oids)
            return out

    def store(self, states):
        """Writes {oid: pickle} as one new transaction; the caller holds commit_lock."""
        with self._lock:
            self._last_tid += 1
            tid = self._last_tid
            for oid, data in states.items():
                self._data.setdefault(oid, []).append((tid, data))
            self._log.append((tid, frozenset(states)))
            return tid

    def current_pickle(self, oid):
        """The latest committed pickle of oid (for size measurements)."""
        with self._lock:
            return self._data[oid][-1][1]

    def open(self, transaction_manager):
        """A new connection whose transactions are those of transaction_manager (one per
        thread, as Zope opens one connection per request thread)."""
        return Connection(self, transaction_manager)


def _dump(obj, persistent_id):
    """The record of a persistent object: (class path, state) with references to other
    persistent objects as persistent ids."""
    f = io.BytesIO()
    p = pickle.Pickler(f, 3)
    p.persistent_id = persistent_id
    p.dump((_class_path(type(obj)), obj.__getstate__()))
    return f.getvalue()


def _load(data, persistent_load):
    u = pickle.Unpickler(io.BytesIO(data))
    u.persistent_load = persistent_load
    return u.load()


class Connection(object):
    """A view of the store for one thread; the data manager of its transactions."""

    def __init__(self, store, transaction_manager):
        self.store = store
        self.transaction_manager = transaction_manager
        self._cache = {}  # oid -> object
        self._serials = {}  # oid -> tid of the committed state loaded in memory
        self._snapshot = store.last_tid()
        self._locked = False  # holds the store's commit lock (tpc_begin to finish/abort)
        self._reset_transaction()
        transaction_manager.registerSynch(self)

    def _reset_transaction(self):
        self._joined = False
        self._registered = {}  # oid -> object changed since the last savepoint
        self._saved = {}  # oid -> pickle written by savepoints of this transaction
        self._added = {}  # oid -> object new in this transaction
        self._read_current = {}  # oid -> serial that must still be current at commit
        self._to_store = None
        self._resolved = set()

    # -- objects ---------------------------------------------------------------------

    def root(self):
        return self.get(ROOT_OID, None)

    def get(self, oid, class_path=None):
        obj = self._cache.get(oid)
        if obj is not None:
            return obj
        if class_path is None:
            data, _ = self.store.load(oid, self._snapshot)
            class_path, _ = _load(data, lambda ref: None)
        cls = _resolve_class(class_path)
        obj = cls.__new__(cls)
        obj._p_oid = oid
        obj._p_jar = self
        obj._p_deactivate()
        self._cache[oid] = obj
        return obj

    def _persistent_id(self, obj):
        if not isinstance(obj, Persistent) or isinstance(obj, type):
            return None
        if obj._p_jar is None:
            obj._p_oid = self.store.new_oid()
            obj._p_jar = self
            self._cache[obj._p_oid] = obj
            self._added[obj._p_oid] = obj
            self._join()
        elif obj._p_jar is not self:
            raise POSError("a reference to an object of another connection")
        return (obj._p_oid, _class_path(type(obj)))

    def _persistent_load(self, ref):
        oid, class_path = ref
        return self.get(oid, class_path)

    def _serialize(self, obj):
        return _dump(obj, self._persistent_id)

    # -- the jar interface of persistent objects ---------------------------------------

    def setstate(self, obj):
        oid = obj._p_oid
        data = self._saved.get(oid)
        if data is None:
            data, tid = self.store.load(oid, self._snapshot)
            self._serials[oid] = tid
        _, state = _load(data, self._persistent_load)
        obj.__setstate__(state)
        obj._p_serial = p64(self._serials.get(oid, 0))

    def register(self, obj):
        self._join()
        self._registered[obj._p_oid] = obj

    def readCurrent(self, obj):
        oid = obj._p_oid
        if oid is not None and oid not in self._added and oid not in self._read_current:
            self._read_current[oid] = self._serials.get(oid)

    def _join(self):
        if not self._joined:
            self.transaction_manager.get().join(self)
            self._joined = True

    # -- synchronizer: a new transaction sees the latest commits ------------------------

    def newTransaction(self, txn):
        last = self.store.last_tid()
        for oid in self.store.changed_between(self._snapshot, last):
            obj = self._cache.get(oid)
            if obj is not None:
                obj._p_invalidate()
        self._snapshot = last

    def beforeCompletion(self, txn):
        pass

    def afterCompletion(self, txn):
        self.newTransaction(txn)  # as ZODB: after a commit or abort, see the latest state

    # -- data manager -------------------------------------------------------------------

    def sortKey(self):
        return "standin-connection:%d" % id(self)

    def abort(self, txn):
        for oid, obj in list(self._registered.items()) + [(o, self._cache.get(o)) for o in self._saved]:
            if obj is not None and oid not in self._added:
                obj._p_invalidate()
        for oid, obj in self._added.items():
            self._forget(oid, obj)
        self._reset_transaction()

    def _forget(self, oid, obj):
        self._cache.pop(oid, None)
        try:
            obj._p_jar = None
            obj._p_oid = None
        except Exception:  # pragma: no cover - persistent refuses on odd states
            pass

    def tpc_begin(self, txn):
        self.store.commit_lock.acquire()
        self._locked = True

    def commit(self, txn):
        """Serialises every changed and new object (new ones found by reachability)."""
        states = dict(self._saved)
        pending = dict(self._registered)
        done = set()
        while True:
            for oid, obj in list(pending.items()):
                states[oid] = self._serialize(obj)
                done.add(oid)
            pending = dict((oid, obj) for oid, obj in self._added.items() if oid not in done)
            if not pending:
                break
        self._to_store = states

    def tpc_vote(self, txn):
        """Checks every written and readCurrent object against the latest commit; resolves
        or raises ConflictError."""
        store = self.store
        for oid, data in list(self._to_store.items()):
            if oid in self._added:
                continue
            latest = store.latest_serial(oid)
            loaded = self._serials.get(oid)
            if latest != loaded:
                self._to_store[oid] = self._resolve(oid, loaded, latest, data)
                self._resolved.add(oid)
        for oid, serial in self._read_current.items():
            if oid not in self._to_store and store.latest_serial(oid) != serial:
                raise ReadConflictError("object %d changed since it was read" % u64(oid), oid)

    def _resolve(self, oid, loaded, latest, new_data):
        factory = {}

        def load_ref(ref):
            key = tuple(ref)
            r = factory.get(key)
            if r is None:
                r = factory[key] = _Ref(key)
            return r

        old_data, _ = self.store.load(oid, loaded)
        committed_data, _ = self.store.load(oid, latest)
        class_path, old = _load(old_data, load_ref)
        _, committed = _load(committed_data, load_ref)
        _, new = _load(new_data, load_ref)
        cls = _resolve_class(class_path)
        resolve = getattr(cls, "_p_resolveConflict", None)
        if resolve is None:
            raise ConflictError("object %d (%s) changed by two transactions" % (u64(oid), class_path), oid)
        try:
            resolved = cls.__new__(cls)._p_resolveConflict(old, committed, new)
        except Exception as e:
            raise ConflictError("object %d (%s): unresolved: %r" % (u64(oid), class_path, e), oid)
        f = io.BytesIO()
        p = pickle.Pickler(f, 3)
        p.persistent_id = lambda o: o.ref if isinstance(o, _Ref) else None
        p.dump((class_path, resolved))
        return f.getvalue()

    def tpc_finish(self, txn):
        try:
            tid = self.store.store(self._to_store)
        finally:
            self._release()
        for oid in self._to_store:
            obj = self._cache.get(oid)
            self._serials[oid] = tid
            if obj is None:
                continue
            if oid in self._resolved:
                obj._p_invalidate()  # the stored state is not the one in memory
            else:
                obj._p_serial = p64(tid)
                obj._p_changed = False
        self._reset_transaction()

    def tpc_abort(self, txn):
        self._release()
        self.abort(txn)

    def _release(self):
        if self._locked:
            self._locked = False
            self.store.commit_lock.release()

    # -- savepoints ---------------------------------------------------------------------

    def savepoint(self):
        """Writes the changed objects' states aside (as ZODB's savepoint does) and returns a
        savepoint that restores them."""
        pending = dict(self._registered)
        while pending:
            for oid, obj in pending.items():
                self._saved[oid] = self._serialize(obj)
                obj._p_changed = False  # a later change registers again
            pending = dict((oid, obj) for oid, obj in self._added.items() if oid not in self._saved)
        self._registered = {}
        return _Savepoint(self, dict(self._saved), dict(self._added))

    def _rollback(self, saved, added):
        for oid, obj in list(self._added.items()):
            if oid not in added:
                self._forget(oid, obj)
        touched = set(self._registered) | set(self._saved)
        self._saved = dict(saved)
        self._added = dict(added)
        self._registered = {}
        for oid in touched:
            obj = self._cache.get(oid)
            if obj is None:
                continue
            obj._p_invalidate()  # reloaded from the savepoint's state or the snapshot
            if oid in self._saved:
                obj._p_activate()
                obj._p_changed = False


class _Savepoint(object):
    def __init__(self, conn, saved, added):
        self.conn = conn
        self.saved = saved
        self.added = added

    def rollback(self):
        self.conn._rollback(self.saved, self.added)
