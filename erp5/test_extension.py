# -*- coding: utf-8 -*-
"""Smoke tests of extension/SyncGatewayReceiver.py without Zope: the Zope and ZODB modules
it imports are replaced by stand-ins, so this checks that the module loads and that its
Zope-independent parts (record storage, date formats, HTTP plumbing) behave."""

import gzip
import importlib
import json
import os
import sys
import types
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "extension"))


class _ConflictError(Exception):
    pass


STUBBED = ("transaction", "AccessControl", "BTrees", "BTrees.OOBTree", "ZODB", "ZODB.POSException")


def _stub_modules():
    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m
    module("transaction", savepoint=lambda optimistic=False: None, commit=lambda: None)
    module("AccessControl", getSecurityManager=lambda: None)
    module("BTrees")
    module("BTrees.OOBTree", OOBTree=dict)
    module("ZODB")
    module("ZODB.POSException", ConflictError=_ConflictError)


class FakeDateTime(object):
    def __init__(self, micros):
        self._micros = micros

    def micros(self):
        return self._micros


class FakeResponse(object):
    def __init__(self):
        self.status, self.headers = 200, {}

    def setStatus(self, s):
        self.status = s

    def setHeader(self, k, v):
        self.headers[k] = v


class FakeRequest(dict):
    def __init__(self, **kw):
        dict.__init__(self, **kw)
        self.RESPONSE = FakeResponse()
        self.form = {}
        self.headers = {}

    def getHeader(self, name, default=None):
        return self.headers.get(name, default)


class FakePortal(object):
    def __init__(self):
        self.aq_base = self
        self.portal_workflow = None

    def getPortalObject(self):
        return self


class TestExtension(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # The stand-ins replace the real modules only while the extension is imported:
        # other tests use the real transaction and BTrees.
        saved = dict((name, sys.modules.get(name)) for name in STUBBED)
        _stub_modules()
        try:
            cls.ext = importlib.import_module("SyncGatewayReceiver")
        finally:
            for name, mod in saved.items():
                if mod is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = mod

    def test_formats(self):
        # 2026-03-01T10:00:00.250000Z
        dt = FakeDateTime(1772359200250000)
        self.assertEqual(self.ext.format_version(dt), "2026-03-01T10:00:00.250000Z")
        self.assertEqual(self.ext.format_rfc822(dt), "Sun, 01 Mar 2026 10:00:00 +0000")

    def test_storage(self):
        s = self.ext.TreeStorage({}, {})
        s.set(("seq", "g", "e", 12), {"hash": "h", "result": {"seq": 12, "status": "ok"}})
        self.assertEqual(s.get(("seq", "g", "e", 12))["result"]["status"], "ok")
        self.assertIsNone(s.get(("seq", "g", "e", 13)))
        # Integer parts sort numerically in the tree's string keys.
        self.assertLess(s.flat_key(("seq", "g", "e", 9)), s.flat_key(("seq", "g", "e", 10)))

    def test_endpoints_need_install(self):
        portal = FakePortal()
        with self.assertRaises(RuntimeError):
            self.ext.ERP5Site_getSyncGatewayCapability(portal, FakeRequest())
        self.assertEqual(self.ext.ERP5Site_installSyncGatewayReceiver(portal), "installed")
        self.assertEqual(self.ext.ERP5Site_installSyncGatewayReceiver(portal), "already installed")

    def test_http_plumbing(self):
        portal = FakePortal()
        self.ext.ERP5Site_installSyncGatewayReceiver(portal)
        req = FakeRequest()
        cap = json.loads(self.ext.ERP5Site_getSyncGatewayCapability(portal, req))
        self.assertEqual(cap["max_entries"], self.ext.CONFIG["max_entries"])
        req = FakeRequest(REQUEST_METHOD="GET")
        self.ext.ERP5Site_receiveSyncGatewayBatch(portal, req)
        self.assertEqual(req.RESPONSE.status, 405)
        body = gzip.compress(json.dumps({"gateway": "g", "epoch": "e", "entries": []}).encode())
        req = FakeRequest(REQUEST_METHOD="POST", BODY=body)
        req.headers["Content-Encoding"] = "gzip"
        out = self.ext.ERP5Site_receiveSyncGatewayBatch(portal, req)
        self.assertEqual((req.RESPONSE.status, req.RESPONSE.headers.get("Content-Encoding")), (200, "gzip"))
        self.assertEqual(json.loads(gzip.decompress(out)), {"results": []})
        req = FakeRequest()
        req.form = {"gateway": "g", "epoch": "e", "seqs": "1-2"}
        out = json.loads(self.ext.ERP5Site_getSyncGatewayResults(portal, req))
        self.assertEqual([r["status"] for r in out["results"]], ["unknown", "unknown"])


if __name__ == "__main__":
    unittest.main()
