# -*- coding: utf-8 -*-
"""Tests of the receiver core: the shared test vectors in testdata/, then core-only cases.

Run with ``python3 -m unittest discover -s erp5`` from the repository root (no packages to
install). The Go double replays the same vectors (erp5sim/vectors_test.go); the format is
described in README.md, "Test vectors".
"""

import glob
import gzip
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sync_gateway_receiver as core  # noqa: E402
from fake_site import FakeSite, parse_version  # noqa: E402

TESTDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata")


class FakeConflictError(Exception):
    """Stands for ZODB's ConflictError."""


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def match(expected, actual, captures, path="$"):
    """Compares a response value with an expected one; returns a list of differences.

    "$any" matches any value; {"$capture": NAME} matches any value and records it;
    "$ref:NAME" matches the value captured as NAME; objects must have the same keys; numbers
    compare by value."""
    if expected == "$any":
        return []
    if isinstance(expected, str) and expected.startswith("$ref:"):
        want = captures.get(expected[5:])
        return [] if want == actual else ["%s: want captured %s = %r, got %r" % (path, expected[5:], want, actual)]
    if isinstance(expected, dict) and set(expected) == {"$capture"}:
        captures[expected["$capture"]] = actual
        return []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return ["%s: want an object, got %r" % (path, actual)]
        diffs = []
        for k in sorted(set(expected) | set(actual)):
            if k not in actual:
                diffs.append("%s.%s: missing" % (path, k))
            elif k not in expected:
                diffs.append("%s.%s: unexpected %r" % (path, k, actual[k]))
            else:
                diffs.extend(match(expected[k], actual[k], captures, "%s.%s" % (path, k)))
        return diffs
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return ["%s: want %r, got %r" % (path, expected, actual)]
        diffs = []
        for i, (e, a) in enumerate(zip(expected, actual)):
            diffs.extend(match(e, a, captures, "%s[%d]" % (path, i)))
        return diffs
    if is_number(expected) and is_number(actual):
        return [] if expected == actual else ["%s: want %r, got %r" % (path, expected, actual)]
    if type(expected) is not type(actual) or expected != actual:
        return ["%s: want %r, got %r" % (path, expected, actual)]
    return []


def substitute(value, captures):
    """Replaces "$ref:NAME" strings in a request with captured values."""
    if isinstance(value, str) and value.startswith("$ref:"):
        return captures[value[5:]]
    if isinstance(value, dict):
        return dict((k, substitute(v, captures)) for k, v in value.items())
    if isinstance(value, list):
        return [substitute(v, captures) for v in value]
    return value


class VectorRunner(object):
    """Replays one vector file against the core and a FakeSite."""

    def __init__(self, vector):
        self.vector = vector
        self.site = FakeSite(parse_version(vector["now"]))
        for d in vector.get("documents", []):
            self.site.load(d["id"], d["portal_type"], d["version"], d.get("properties", {}))
        cfg = vector.get("config", {})
        self.receiver = core.Receiver(
            self.site, core.MemoryStorage(),
            max_entries=cfg.get("max_entries", core.DEFAULT_MAX_ENTRIES),
            max_batch_bytes=cfg.get("max_batch_bytes", core.DEFAULT_MAX_BATCH_BYTES),
            retention_days=cfg.get("retention_days", core.DEFAULT_RETENTION_DAYS),
            encodings=cfg.get("encodings", ["gzip"]),
            conflict_errors=(FakeConflictError,))
        self.captures = {}

    def head_office(self, op):
        site = self.site
        sp = site.savepoint()
        try:
            if op["op"] == "edit":
                site.edit(op["id"], op["properties"])
            elif op["op"] == "create":
                doc_id = site.newContent(op["portal_type"], op["parent_relative_url"], op.get("properties", {}))
                if "capture" in op:
                    self.captures[op["capture"]] = doc_id
            elif op["op"] == "transition":
                site.transition(op["id"], op["transition"], "")
            else:
                raise AssertionError("unknown head_office op %r" % op["op"])
        except Exception:
            site.rollback(sp)
            raise

    def request(self, req):
        endpoint = req["endpoint"]
        if endpoint == "capability":
            return self.receiver.http_capability()
        if endpoint == "results":
            q = substitute(req.get("query", {}), self.captures)
            return self.receiver.http_results(q.get("gateway"), q.get("epoch"), q.get("seqs"))
        if "raw_body" in req:
            body = req["raw_body"].encode("utf-8")
        else:
            body = json.dumps(substitute(req["body"], self.captures)).encode("utf-8")
        encoding = req.get("encoding")
        if encoding == "gzip":
            body = gzip.compress(body)
        if endpoint == "batch":
            return self.receiver.http_batch(body, encoding)
        if endpoint == "changes":
            return self.receiver.http_changes(body, encoding)
        raise AssertionError("unknown endpoint %r" % endpoint)

    def run(self, test):
        for i, step in enumerate(self.vector["steps"]):
            where = "%s step %d (%s)" % (self.vector["name"], i, step.get("name", ""))
            if "now" in step:
                self.site.now = parse_version(step["now"])
            for op in step.get("head_office", []):
                self.head_office(op)
            if "request" in step:
                resp = self.request(step["request"])
                want = step["response"]
                test.assertEqual(resp.status, want["status"], "%s: status, body %r" % (where, resp.body))
                body = resp.body
                if resp.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if "encoding" in want:
                    test.assertEqual(resp.headers.get("Content-Encoding"), want["encoding"], where)
                if "body" in want:
                    diffs = match(want["body"], json.loads(body.decode("utf-8")), self.captures)
                    test.assertEqual(diffs, [], where)
            for doc_id, want in sorted(step.get("documents", {}).items()):
                state = self.site.getState(doc_id)
                if want is None:
                    test.assertIsNone(state, "%s: %s exists" % (where, doc_id))
                    continue
                test.assertIsNotNone(state, "%s: %s missing" % (where, doc_id))
                if "version" in want:
                    test.assertEqual(state["version"], want["version"], "%s: %s version" % (where, doc_id))
                for k, v in sorted(want.get("properties", {}).items()):
                    diffs = match(v, state["properties"].get(k), self.captures, "%s.%s" % (doc_id, k))
                    test.assertEqual(diffs, [], where)


def vector_files():
    return sorted(glob.glob(os.path.join(TESTDATA, "*.json")))


class TestVectors(unittest.TestCase):
    def test_vectors_exist(self):
        self.assertGreaterEqual(len(vector_files()), 10)

    def test_vectors(self):
        for path in vector_files():
            with open(path) as f:
                vector = json.load(f)
            with self.subTest(vector=os.path.basename(path)):
                VectorRunner(vector).run(self)


class ExplodingSite(FakeSite):
    """A site whose edits raise a ZODB-like conflict error."""

    def edit(self, doc_id, fields):
        raise FakeConflictError("database conflict")


class TestCore(unittest.TestCase):
    def make(self, site=None, **kw):
        site = site or FakeSite(parse_version("2026-03-01T10:00:00.000000Z"))
        site.load("person_module/1", "Person", "2026-02-01T00:00:00.000000Z", {"title": "Ann"})
        storage = core.MemoryStorage()
        return core.Receiver(site, storage, conflict_errors=(FakeConflictError,), **kw), storage

    def batch(self, *entries):
        return {"gateway": "g", "epoch": "e", "entries": list(entries)}

    def test_conflict_error_is_reraised_and_not_recorded(self):
        r, storage = self.make(site=ExplodingSite(parse_version("2026-03-01T10:00:00.000000Z")))
        entry = {"seq": 1, "op": "put", "id": "person_module/1", "fields": {"title": "Bob"},
                 "base": {"title": "Ann"}, "hash": "h1"}
        with self.assertRaises(FakeConflictError):
            r.receive(self.batch(entry))
        self.assertIsNone(storage.get(("seq", "g", "e", 1)))

    def test_other_errors_reject_and_record(self):
        class Broken(FakeSite):
            def edit(self, doc_id, fields):
                raise RuntimeError("boom")
        r, storage = self.make(site=Broken(parse_version("2026-03-01T10:00:00.000000Z")))
        entry = {"seq": 1, "op": "put", "id": "person_module/1", "fields": {"title": "Bob"},
                 "base": {"title": "Ann"}, "hash": "h1"}
        res = r.receive(self.batch(entry))["results"][0]
        self.assertEqual((res["status"], res["reason"]), ("rejected", "invalid"))
        self.assertEqual(storage.get(("seq", "g", "e", 1))["result"], res)

    def test_zstd_advertised_only_when_available(self):
        r, _ = self.make(encodings=["zstd", "gzip"])
        self.assertEqual(r.capability()["encodings"], ["zstd", "gzip"] if core.HAVE_ZSTD else ["gzip"])
        if not core.HAVE_ZSTD:
            resp = r.http_batch(b"\x28\xb5\x2f\xfd", "zstd")
            self.assertEqual(resp.status, 415)

    def test_gzip_round_trip_and_bomb(self):
        r, _ = self.make()
        body = gzip.compress(json.dumps(self.batch()).encode())
        resp = r.http_batch(body, "gzip")
        self.assertEqual((resp.status, resp.headers.get("Content-Encoding")), (200, "gzip"))
        self.assertEqual(json.loads(gzip.decompress(resp.body)), {"results": []})
        bomb = gzip.compress(b" " * (core.MAX_DECODED_BYTES + 10))
        self.assertEqual(r.http_batch(bomb, "gzip").status, 413)
        self.assertEqual(r.http_batch(b"not gzip", "gzip").status, 400)
        self.assertEqual(r.http_batch(body[:-8], "gzip").status, 400)

    def test_parse_seqs(self):
        self.assertEqual(core.parse_seqs("5, 3,4-6"), [3, 4, 5, 6])
        for bad in ("", "x", "5-3", "-1", "1_000", "+5", "1.5", "3-"):
            with self.assertRaises(core.ReceiverError):
                core.parse_seqs(bad)
        with self.assertRaises(core.ReceiverError) as cm:
            core.parse_seqs("0-%d" % core.MAX_RESULT_SEQS)
        self.assertEqual(cm.exception.status, 413)

    def test_values_equal(self):
        eq = core.values_equal
        self.assertTrue(eq(None, ""))
        self.assertTrue(eq(1, 1.0))
        self.assertFalse(eq(1, "1"))
        self.assertFalse(eq(True, 1))
        self.assertTrue(eq([1, "a"], [1.0, "a"]))
        self.assertFalse(eq({"a": 1}, {"a": 1, "b": None}))

    def test_cursor_round_trip(self):
        for key in (0, 12345, ["2026-03-01 10:00:00.000001", 42]):
            # A bare position: the cursors handed out before the overlap window.
            self.assertEqual(core.decode_cursor(core.encode_cursor(key)), (key, []))
            cursor = core.encode_cursor({"a": key, "s": [key]})
            self.assertEqual(core.decode_cursor(cursor), (key, [key]))
        with self.assertRaises(core.ReceiverError):
            core.decode_cursor(core.encode_cursor({"a": 1}))
        with self.assertRaises(core.ReceiverError):
            core.decode_cursor("%%%")


if __name__ == "__main__":
    unittest.main()
