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


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "extension"))
import SyncGatewayForms as ext  # noqa: E402


class FakeField(object):
    def __init__(self, fid, meta_type, values, template=None):
        self.id, self.meta_type, self.values, self.template = fid, meta_type, values, template

    def getId(self):
        return self.id

    def get_value(self, key):
        if key not in self.values:
            raise KeyError(key)
        return self.values[key]

    def getRecursiveTemplateField(self):
        return self.template


class FakeForm(object):
    def __init__(self, fid, title, groups):
        self.id, self.title, self.groups = fid, title, groups

    def getId(self):
        return self.id

    def get_groups(self):
        return [g for g, _ in self.groups]

    def get_fields_in_group(self, group):
        return dict(self.groups)[group]


class FakeState(object):
    def __init__(self, title, transitions):
        self.title, self.transitions = title, transitions


class FakeTransition(object):
    def __init__(self, actbox_name):
        self.actbox_name = actbox_name


class FakeDCWorkflow(object):
    state_var = "simulation_state"

    def __init__(self):
        self.states = {"draft": FakeState("Draft", ("confirm", "confirm_action", "cancel_action")),
                       "confirmed": FakeState("Confirmed", ())}
        self.transitions = {"confirm_action": FakeTransition("Confirm Order"), "cancel_action": FakeTransition("Cancel Order")}

    def getId(self):
        return "order_workflow"


class TestExtension(unittest.TestCase):
    """The ERP5 adapter over stand-ins for ERP5Form and DCWorkflow objects."""

    def test_form_object(self):
        common = {"title": "Client", "description": "", "editable": 1, "hidden": 0, "required": 0, "enabled": 1}
        relation = FakeField("my_destination_title", "ProxyField", dict(common, portal_type=[("Organisation",)],
                             catalog_index="title", base_category="destination", allow_jump=1, allow_creation=0),
                             template=FakeField("t", "RelationStringField", {}))
        date = FakeField("my_start_date", "DateTimeField", dict(common, title="Date", date_only=1))
        hidden = FakeField("my_secret", "StringField", dict(common, enabled=0))
        listbox = FakeField("listbox", "ListBox", dict(common, title="Lines", editable=0, columns=[("quantity", "Quantity")],
                            portal_types=[("Sale Order Line", "Sale Order Line")]))
        form = FakeForm("SaleOrder_view", "Sale Order", [("left", [relation, date, hidden]), ("bottom", [listbox]),
                                                         ("hidden", [FakeField("my_x", "StringField", common)])])
        out = ext.form_object(form)
        self.assertEqual(out["group_list"], [["left", ["my_destination_title", "my_start_date"]], ["bottom", ["listbox"]]])
        rel = out["fields"]["my_destination_title"]
        self.assertEqual((rel["type"], rel["portal_types"], rel["base_category"], rel["editable"]),
                         ("RelationStringField", ["Organisation"], "destination", 1))
        self.assertEqual(out["fields"]["my_start_date"]["date_only"], 1)
        lb = out["fields"]["listbox"]
        self.assertNotIn("required", lb)
        self.assertEqual(lb["portal_type"], [["Sale Order Line", "Sale Order Line"]])
        self.assertEqual(core.embedded_types(out), ["Sale Order Line"])

    def test_workflow_object(self):
        w = ext.workflow_object(FakeDCWorkflow())
        self.assertEqual(w["state_variable"], "simulation_state")
        self.assertEqual(w["states"]["draft"]["transitions"], ["confirm_action", "cancel_action"])
        self.assertEqual(w["transitions"]["confirm_action"], {"title": "Confirm Order"})
        self.assertEqual(w["states"]["confirmed"]["transitions"], [])


if __name__ == "__main__":
    unittest.main()
