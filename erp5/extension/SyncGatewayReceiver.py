# -*- coding: utf-8 -*-
"""External Methods of the sync gateway receiver (docs/DESIGN.md §7, erp5/README.md).

This module adapts the pure-Python core (``sync_gateway_receiver.py``) to ERP5: documents
through the portal and its workflows, savepoints through ``transaction``, the dedupe records
in an OOBTree stored on the portal and written in the request's own transaction, and
ZODB's ConflictError re-raised so Zope retries the whole request. See ../README.md for the
installation.

Functions (one External Method object each, ids as the function names):

* ``ERP5Site_getSyncGatewayCapability``   GET
* ``ERP5Site_receiveSyncGatewayBatch``     POST, JSON body, Content-Encoding gzip or zstd
* ``ERP5Site_getSyncGatewayResults``       GET ?gateway=&epoch=&seqs=
* ``ERP5Site_getSyncGatewayChanges``       POST, JSON body
* ``ERP5Site_installSyncGatewayReceiver``  run once by a Manager: creates the record tree
"""

import datetime
import json

import transaction
from AccessControl import getSecurityManager
from BTrees.OOBTree import OOBTree
from ZODB.POSException import ConflictError

try:  # the core installed as an ERP5 Module Component
    from erp5.component.module.SyncGatewayReceiverCore import (  # type: ignore
        Receiver, Rejected, InvalidQuery, TreeStorage)
except ImportError:  # the core on the Python path (instance lib/python or site-packages)
    from sync_gateway_receiver import Receiver, Rejected, InvalidQuery, TreeStorage  # type: ignore

# Limits advertised and enforced. max_entries bounds one ERP5 transaction: a big one
# collides with head-office users and is retried whole by Zope.
CONFIG = {
    "max_entries": 500,
    "max_batch_bytes": 1 << 20,
    "retention_days": 365,
    "encodings": ["zstd", "gzip"],  # zstd is dropped where Python cannot decode it
    # The changes query re-reads this many seconds of the catalog behind each cursor: more
    # than the longest indexing transaction (between stamping indexation_timestamp and
    # committing), else a late-committing document can be skipped.
    "overlap_seconds": 600,
}
PURGE_CHUNK = 1000  # records deleted per purge transaction

# The properties returned as a document's `state` and by the changes query, per portal
# type: every field the gateways' scopes replicate. A portal type not listed gets its
# simple-typed properties, which can be many; list yours here.
STATE_FIELDS = {
    # "Person": ["title", "first_name", "last_name", "reference", "default_email_text",
    #            "default_telephone_text", "function", "subordination"],
}

RECORDS_ATTRIBUTE = "_sync_gateway_receiver_records"
BY_TIME_ATTRIBUTE = "_sync_gateway_receiver_records_by_time"
WORKFLOW_VARIABLES = ("validation_state", "simulation_state")
SIMPLE_TYPES = ("string", "text", "int", "float", "boolean", "date", "lines", "tokens", "selection")

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_EPOCH = datetime.datetime(1970, 1, 1)


def _utc(date_time):
    """A Zope DateTime as a naive UTC datetime with microseconds."""
    return _EPOCH + datetime.timedelta(microseconds=date_time.micros())


def format_version(date_time):
    return _utc(date_time).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_rfc822(date_time):
    d = _utc(date_time)
    return "%s, %02d %s %04d %02d:%02d:%02d +0000" % (
        _DAYS[d.weekday()], d.day, _MONTHS[d.month - 1], d.year, d.hour, d.minute, d.second)


class ERP5Site(object):
    """The core's Site interface over an ERP5 portal, with the user's permissions."""

    def __init__(self, portal):
        self.portal = portal
        self.workflow = portal.portal_workflow

    def _get(self, doc_id):
        try:
            return self.portal.restrictedTraverse(str(doc_id))
        except ConflictError:
            raise
        except Exception:  # NotFound, KeyError, Unauthorized: not visible to this user
            return None

    def _check(self, permission, obj):
        if not getSecurityManager().checkPermission(permission, obj):
            raise Rejected("forbidden", "%s on %s is not allowed" % (permission, obj.getRelativeUrl()))

    def _properties(self, doc):
        names = STATE_FIELDS.get(doc.getPortalType())
        props = {}
        if names is None:
            names = [p["id"] for p in doc.propertyMap() if p.get("type") in SIMPLE_TYPES]
        for name in names:
            value = doc.getProperty(name)
            if hasattr(value, "micros"):  # DateTime
                value = format_rfc822(value)
            elif isinstance(value, tuple):
                value = list(value)
            props[name] = value
        for var in WORKFLOW_VARIABLES:
            state = self.workflow.getInfoFor(doc, var, None)
            if state is not None:
                props[var] = state
        return props

    def getState(self, doc_id):
        doc = self._get(doc_id)
        if doc is None:
            return None
        modified = doc.getModificationDate()
        return {"id": doc.getRelativeUrl(), "portal_type": doc.getPortalType(),
                "version": format_version(modified), "modification_date": format_rfc822(modified),
                "properties": self._properties(doc)}

    def newContent(self, portal_type, parent_relative_url, fields):
        parent = self._get(parent_relative_url)
        if parent is None:
            raise Rejected("invalid", "no container %s" % parent_relative_url)
        self._check("Add portal content", parent)
        doc = parent.newContent(portal_type=portal_type)
        if fields:
            doc.edit(**fields)
        return doc.getRelativeUrl()

    def edit(self, doc_id, fields):
        doc = self._get(doc_id)
        if doc is None:
            raise Rejected("not_found", "no document %s" % doc_id)
        self._check("Modify portal content", doc)
        doc.edit(**fields)

    def transition(self, doc_id, transition, comment):
        from Products.CMFCore.WorkflowCore import WorkflowException
        doc = self._get(doc_id)
        if doc is None:
            raise Rejected("not_found", "no document %s" % doc_id)
        try:
            self.workflow.doActionFor(doc, transition, comment=comment or "")
        except WorkflowException as e:
            raise Rejected("not_allowed", "%s: %s" % (transition, e))

    def savepoint(self):
        return transaction.savepoint(optimistic=True)

    def rollback(self, savepoint):
        savepoint.rollback()

    def overlapStart(self, key, seconds):
        """The position `seconds` before a (indexation_timestamp, uid) key."""
        from DateTime import DateTime
        return [str(DateTime(key[0]) - seconds / 86400.0), -1]

    def searchChanges(self, portal_type, query, after, limit):
        """Catalog rows by (indexation_timestamp, uid), after the given position.

        The jIO query goes to the catalog as ERP5Document_getHateoas passes raw_search's
        query (its `full_text` parameter); check that your instance's script does the same.
        """
        from Products.ZSQLCatalog.SQLCatalog import ComplexQuery, SimpleQuery
        kw = {
            "sort_on": (("indexation_timestamp", "ascending"), ("uid", "ascending")),
            "limit": limit,
            "select_list": ("indexation_timestamp", "relative_url"),
        }
        if portal_type:
            kw["portal_type"] = portal_type
        if query:
            kw["full_text"] = query
        if after is not None:
            stamp, uid = after
            kw["query"] = ComplexQuery(
                SimpleQuery(indexation_timestamp=stamp, comparison_operator=">"),
                ComplexQuery(SimpleQuery(indexation_timestamp=stamp, comparison_operator="="),
                             SimpleQuery(uid=uid, comparison_operator=">"), logical_operator="and"),
                logical_operator="or")
        try:
            brains = self.portal.portal_catalog(**kw)
        except ConflictError:
            raise
        except Exception as e:
            raise InvalidQuery(str(e))
        return [{"id": b.relative_url, "key": [str(b.indexation_timestamp), b.uid]} for b in brains]


def _storage(portal):
    records = getattr(portal.aq_base, RECORDS_ATTRIBUTE, None)
    by_time = getattr(portal.aq_base, BY_TIME_ATTRIBUTE, None)
    if records is None or by_time is None:
        raise RuntimeError("sync gateway receiver not installed: run ERP5Site_installSyncGatewayReceiver")
    return TreeStorage(records, by_time)


def _receiver(context):
    portal = context.getPortalObject()
    return Receiver(ERP5Site(portal), _storage(portal), conflict_errors=(ConflictError,), **CONFIG)


def _body(REQUEST):
    body = REQUEST.get("BODY")
    if body is None:
        f = REQUEST.get("BODYFILE")
        if f is None:
            return b""
        f.seek(0)
        body = f.read()
    if not isinstance(body, bytes):
        body = body.encode("utf-8")
    return body


def _answer(REQUEST, response):
    RESPONSE = REQUEST.RESPONSE
    RESPONSE.setStatus(response.status)
    for k, v in response.headers.items():
        RESPONSE.setHeader(k, v)
    return response.body


def _method_not_allowed(REQUEST, allowed):
    REQUEST.RESPONSE.setStatus(405)
    REQUEST.RESPONSE.setHeader("Allow", allowed)
    return b""


def ERP5Site_getSyncGatewayCapability(self, REQUEST=None):
    return _answer(REQUEST, _receiver(self).http_capability())


def ERP5Site_receiveSyncGatewayBatch(self, REQUEST=None):
    if REQUEST.get("REQUEST_METHOD") != "POST":
        return _method_not_allowed(REQUEST, "POST")
    return _answer(REQUEST, _receiver(self).http_batch(_body(REQUEST), REQUEST.getHeader("Content-Encoding")))


def ERP5Site_getSyncGatewayResults(self, REQUEST=None):
    form = REQUEST.form
    return _answer(REQUEST, _receiver(self).http_results(form.get("gateway"), form.get("epoch"), form.get("seqs")))


def ERP5Site_getSyncGatewayChanges(self, REQUEST=None):
    if REQUEST.get("REQUEST_METHOD") != "POST":
        return _method_not_allowed(REQUEST, "POST")
    return _answer(REQUEST, _receiver(self).http_changes(_body(REQUEST), REQUEST.getHeader("Content-Encoding")))


def ERP5Site_installSyncGatewayReceiver(self):
    """Creates the record trees on the portal once; later runs change nothing. Upgrading
    from a version without the by-time tree creates it and gives the existing records the
    current time, in chunks of PURGE_CHUNK, one transaction each."""
    portal = self.getPortalObject()
    installed = "already installed"
    if getattr(portal.aq_base, RECORDS_ATTRIBUTE, None) is None:
        setattr(portal, RECORDS_ATTRIBUTE, OOBTree())
        installed = "installed"
    if getattr(portal.aq_base, BY_TIME_ATTRIBUTE, None) is None:
        setattr(portal, BY_TIME_ATTRIBUTE, OOBTree())
        storage = _storage(portal)
        while storage.index_untimed(PURGE_CHUNK):
            transaction.commit()
        installed = "installed" if installed == "installed" else "upgraded"
    return installed


def ERP5Site_purgeSyncGatewayRecords(self, max_chunks=100):
    """Deletes the records older than retention_days, PURGE_CHUNK per transaction (each
    committed before the next), at most max_chunks chunks per call. Run it from an ERP5
    Alarm (e.g. hourly), as a user who may run it; returns the number deleted."""
    receiver = _receiver(self)
    deleted = 0
    for _ in range(max_chunks):
        n, more = receiver.purge(PURGE_CHUNK)
        transaction.commit()
        deleted += n
        if not more:
            break
    return deleted
