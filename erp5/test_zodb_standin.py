# -*- coding: utf-8 -*-
"""Tests of zodb_standin, the stand-in for ZODB's connection and storage: MVCC snapshots,
write conflicts, the real BTrees conflict resolution, readCurrent, savepoints and aborts,
all driven through the real ``transaction`` package. Needs Debian's python3-btrees,
python3-persistent and python3-transaction (run with /usr/bin/python3)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import transaction  # noqa: E402
from BTrees.OOBTree import OOBTree  # noqa: E402
from persistent import Persistent  # noqa: E402

from zodb_standin import ConflictError, ReadConflictError, VersionedStore  # noqa: E402


class Thing(Persistent):
    def __init__(self, value):
        self.value = value


class TestStandin(unittest.TestCase):
    def setUp(self):
        self.store = VersionedStore()
        self.a = self.open()
        self.b = self.open()

    def open(self):
        tm = transaction.TransactionManager()
        return tm, self.store.open(tm)

    def commit(self, who, fn):
        tm, conn = who
        tm.begin()
        try:
            out = fn(conn.root())
            tm.commit()
            return out
        except BaseException:
            tm.abort()
            raise

    def test_commit_is_seen_by_the_next_transaction_only(self):
        self.commit(self.a, lambda r: r.__setitem__("t", Thing(1)))
        tm_b, conn_b = self.b
        tm_b.begin()
        self.assertEqual(conn_b.root()["t"].value, 1)
        self.commit(self.a, lambda r: setattr(r["t"], "value", 2))
        self.assertEqual(conn_b.root()["t"].value, 1, "a snapshot does not move inside a transaction")
        tm_b.abort()
        tm_b.begin()
        self.assertEqual(conn_b.root()["t"].value, 2)
        tm_b.abort()

    def test_write_write_conflict(self):
        self.commit(self.a, lambda r: r.__setitem__("t", Thing(1)))
        tm_a, conn_a = self.a
        tm_b, conn_b = self.b
        tm_a.begin()
        tm_b.begin()
        conn_a.root()["t"].value = 2
        conn_b.root()["t"].value = 3
        tm_a.commit()
        with self.assertRaises(ConflictError):
            tm_b.commit()
        self.assertFalse(self.store.commit_lock.locked(), "a failed commit releases the lock")
        tm_b.abort()
        tm_b.begin()
        self.assertEqual(conn_b.root()["t"].value, 2)
        tm_b.abort()

    def test_btree_bucket_conflicts_resolved_by_btrees(self):
        self.commit(self.a, lambda r: r.__setitem__("tree", OOBTree({"a": 1, "z": 1})))
        tm_a, conn_a = self.a
        tm_b, conn_b = self.b
        tm_a.begin()
        tm_b.begin()
        conn_a.root()["tree"]["b"] = 2
        conn_b.root()["tree"]["c"] = 3
        tm_a.commit()
        tm_b.commit()  # different keys of one bucket: merged
        tm_a.begin()
        self.assertEqual(dict(conn_a.root()["tree"].items()), {"a": 1, "b": 2, "c": 3, "z": 1})
        tm_a.abort()

    def test_same_key_inserted_twice_conflicts(self):
        self.commit(self.a, lambda r: r.__setitem__("tree", OOBTree({"a": 1})))
        tm_a, conn_a = self.a
        tm_b, conn_b = self.b
        tm_a.begin()
        tm_b.begin()
        conn_a.root()["tree"]["k"] = "first"
        conn_b.root()["tree"]["k"] = "second"
        tm_a.commit()
        with self.assertRaises(ConflictError):
            tm_b.commit()
        tm_b.abort()

    def test_big_trees_split_buckets_and_conflict_or_merge(self):
        # Enough keys for many buckets (separate persistent objects): concurrent inserts
        # into different buckets touch different objects.
        self.commit(self.a, lambda r: r.__setitem__("tree", OOBTree(dict(("k%05d" % i, i) for i in range(3000)))))
        tm_a, conn_a = self.a
        tm_b, conn_b = self.b
        self.assertGreater(len(self.store._data), 50, "the tree's buckets are separate records")
        tm_a.begin()
        tm_b.begin()
        conn_a.root()["tree"]["k00000x"] = "a"
        conn_b.root()["tree"]["k02999x"] = "b"
        tm_a.commit()
        tm_b.commit()
        tm_a.begin()
        tree = conn_a.root()["tree"]
        self.assertEqual((len(tree), tree["k00000x"], tree["k02999x"]), (3002, "a", "b"))
        tm_a.abort()

    def test_read_current(self):
        self.commit(self.a, lambda r: (r.__setitem__("t", Thing(1)), r.__setitem__("u", Thing(1))))
        tm_a, conn_a = self.a
        tm_b, conn_b = self.b
        tm_a.begin()
        tm_b.begin()
        root_b = conn_b.root()
        conn_b.readCurrent(root_b["t"])
        root_b["u"].value = 5
        conn_a.root()["t"].value = 2
        tm_a.commit()
        with self.assertRaises(ReadConflictError):
            tm_b.commit()
        tm_b.abort()

    def test_savepoint_rollback(self):
        self.commit(self.a, lambda r: (r.__setitem__("t", Thing(1)), r.__setitem__("tree", OOBTree())))
        tm, conn = self.a
        tm.begin()
        root = conn.root()
        root["t"].value = 2
        root["tree"]["x"] = 1
        sp = transaction.savepoint  # the module-level one uses the thread's manager
        self.assertTrue(callable(sp))
        sp1 = tm.savepoint()
        root["t"].value = 3
        root["tree"]["y"] = 2
        root["new"] = Thing(9)
        sp2 = tm.savepoint()
        root["t"].value = 4
        sp2.rollback()
        self.assertEqual(root["t"].value, 3)
        sp1.rollback()
        self.assertEqual((root["t"].value, sorted(root["tree"].keys()), "new" in root), (2, ["x"], False))
        root["t"].value = 5
        tm.commit()
        tm_b, conn_b = self.b
        tm_b.begin()
        r = conn_b.root()
        self.assertEqual((r["t"].value, sorted(r["tree"].keys()), "new" in r), (5, ["x"], False))
        tm_b.abort()

    def test_savepoint_before_first_change_rolls_back_everything(self):
        self.commit(self.a, lambda r: r.__setitem__("t", Thing(1)))
        tm, conn = self.a
        tm.begin()
        sp = tm.savepoint()
        conn.root()["t"].value = 7
        sp.rollback()
        self.assertEqual(conn.root()["t"].value, 1)
        tm.commit()

    def test_abort_discards(self):
        self.commit(self.a, lambda r: r.__setitem__("t", Thing(1)))
        tm, conn = self.a
        tm.begin()
        conn.root()["t"].value = 7
        conn.root()["n"] = Thing(2)
        tm.abort()
        tm.begin()
        self.assertEqual((conn.root()["t"].value, "n" in conn.root()), (1, False))
        tm.abort()


if __name__ == "__main__":
    unittest.main()
