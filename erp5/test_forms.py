# -*- coding: utf-8 -*-
"""Tests of the forms core: the shared vectors in testdata/forms/, then core-only cases.

Run with ``python3 -m unittest discover -s erp5`` from the repository root. The Go double
replays the same vectors (erp5sim/forms_vectors_test.go).
"""

import glob
import gzip
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sync_gateway_forms as core  # noqa: E402

FORMS_TESTDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata", "forms")


def match(expected, actual, path="$"):
    """Compares an answer with the expected one ("$any" matches anything); returns the
    differences."""
    if expected == "$any":
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
                diffs.extend(match(expected[k], actual[k], "%s.%s" % (path, k)))
        return diffs
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return ["%s: want %r, got %r" % (path, expected, actual)]
        diffs = []
        for i, (e, a) in enumerate(zip(expected, actual)):
            diffs.extend(match(e, a, "%s[%d]" % (path, i)))
        return diffs
    if expected != actual or type(expected) is bool and type(actual) is not bool:
        return ["%s: want %r, got %r" % (path, expected, actual)]
    return []


class TestVectors(unittest.TestCase):
    def test_vectors_exist(self):
        self.assertTrue(glob.glob(os.path.join(FORMS_TESTDATA, "*.json")))

    def test_vectors(self):
        for path in sorted(glob.glob(os.path.join(FORMS_TESTDATA, "*.json"))):
            with open(path, "rb") as fh:
                vector = json.loads(fh.read().decode("utf-8"))
            site = core.DictSite(vector["site"]["forms"], vector["site"]["workflows"])
            for i, step in enumerate(vector["steps"]):
                where = "%s step %d (%s)" % (vector["name"], i, step["name"])
                req = step["request"]
                body = json.dumps(req["body"]).encode("utf-8")
                encoding = req.get("encoding")
                if encoding == "gzip":
                    body = gzip.compress(body)
                resp = core.http_forms(site, body, encoding)
                want = step["response"]
                self.assertEqual(resp.status, want["status"], "%s: %r" % (where, resp.body))
                out = resp.body
                if "encoding" in want:
                    self.assertEqual(resp.headers.get("Content-Encoding"), want["encoding"], where)
                if resp.headers.get("Content-Encoding") == "gzip":
                    out = gzip.decompress(out)
                self.assertEqual(match(want["body"], json.loads(out.decode("utf-8"))), [], where)


class TestCore(unittest.TestCase):
    def test_tag_is_canonical(self):
        a = core.tag({"b": 1, "a": "é"}, None)
        b = core.tag({"a": "é", "b": 1}, None)
        self.assertEqual(a, b)
        self.assertEqual(core.canonical({"a": "é<"}), u'{"a":"é<"}'.encode("utf-8"))

    def test_embedded_types_follow_group_order(self):
        form = {"group_list": [["left", ["x"]], ["bottom", [["lb2", {}], "lb1"]]],
                "fields": {"x": {"type": "StringField"},
                           "lb1": {"type": "ListBox", "portal_type": [["B", "B"], ["A", "A"]]},
                           "lb2": {"type": "ListBox", "portal_type": [["C", "C"]]}}}
        self.assertEqual(core.embedded_types(form), ["C", "B", "A"])
        self.assertEqual(core.embedded_types(None), [])

    def test_bad_bodies(self):
        site = core.DictSite({}, {})
        self.assertEqual(core.http_forms(site, b"not json").status, 400)
        self.assertEqual(core.http_forms(site, b"\x1f\x8bxx", "gzip").status, 400)
        self.assertEqual(core.http_forms(site, b"{}", "br").status, 415)
        too_many = json.dumps({"portal_types": ["T%d" % i for i in range(core.MAX_TYPES + 1)]}).encode("utf-8")
        self.assertEqual(core.http_forms(site, too_many).status, 400)

    def test_repeated_types_answered_once(self):
        site = core.DictSite({"A": {"group_list": [], "fields": {}}}, {})
        out = core.answer({"portal_types": ["A", "A"]}, site)
        self.assertEqual([t["portal_type"] for t in out["types"]], ["A"])


if __name__ == "__main__":
    unittest.main()
