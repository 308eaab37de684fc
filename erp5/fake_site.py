# -*- coding: utf-8 -*-
"""An in-memory ERP5 site for the receiver core's tests.

FakeSite implements the ``Site`` interface of ``sync_gateway_receiver`` with the same rules as
the Go double (``erp5sim``): the same portal types and field types, value coercion, workflow
transitions, id generation and version bumps, so that both replay the test vectors in
``testdata/`` to the same answers. It is test code, not part of what is installed in ERP5.
"""

import copy
import datetime
import email.utils
import math
import re

from sync_gateway_receiver import InvalidQuery, Rejected

UTC = datetime.timezone.utc if hasattr(datetime, "timezone") else None
MICRO = datetime.timedelta(microseconds=1)

# Field types of the closed forms (erp5sim/schema.go). Read-only fields are the workflow
# state variables, which the core already refuses.
FIELD_TYPES = {
    "Person": {
        "title": "StringField", "first_name": "StringField", "last_name": "StringField",
        "reference": "StringField", "default_email_text": "EmailField",
        "default_telephone_text": "StringField", "function": "StringField",
        "subordination": "StringField", "start_date": "DateTimeField",
        "description": "TextAreaField", "validation_state": "StringField",
    },
    "Organisation": {
        "title": "StringField", "reference": "StringField", "corporate_name": "StringField",
        "default_email_text": "EmailField", "default_telephone_text": "StringField",
        "default_address_street_address": "TextAreaField", "default_address_zip_code": "StringField",
        "default_address_city": "StringField", "role": "StringField",
        "description": "TextAreaField", "validation_state": "StringField",
    },
    "Product": {
        "title": "StringField", "reference": "StringField", "ean13_code": "StringField",
        "product_line": "StringField", "quantity_unit": "StringField", "base_price": "FloatField",
        "weight": "FloatField", "description": "TextAreaField", "validation_state": "StringField",
    },
    "Sale Order": {
        "title": "StringField", "reference": "StringField", "source": "StringField",
        "source_section": "StringField", "destination": "StringField",
        "destination_section": "StringField", "start_date": "DateTimeField",
        "stop_date": "DateTimeField", "price_currency": "StringField", "comment": "TextAreaField",
        "simulation_state": "StringField",
    },
    "Sale Order Line": {
        "title": "StringField", "resource": "StringField", "quantity": "FloatField",
        "price": "FloatField", "int_index": "IntegerField", "description": "TextAreaField",
        "simulation_state": "StringField",
    },
}

VALIDATION_WORKFLOW = {
    "validate_action": (("draft", "invalidated"), "validated"),
    "invalidate_action": (("validated",), "invalidated"),
    "delete_action": (("draft", "validated", "invalidated"), "deleted"),
}
ORDER_WORKFLOW = {
    "plan_action": (("draft",), "planned"),
    "order_action": (("draft", "planned"), "ordered"),
    "confirm_action": (("draft", "planned", "ordered"), "confirmed"),
    "cancel_action": (("draft", "planned", "ordered"), "cancelled"),
    "delete_action": (("draft", "cancelled"), "deleted"),
}


def workflow(portal_type):
    """Returns (state variable, transitions) of a portal type."""
    if portal_type in ("Sale Order", "Sale Order Line"):
        return "simulation_state", ORDER_WORKFLOW
    return "validation_state", VALIDATION_WORKFLOW


def field_type(portal_type, name):
    """The field type of a property; None outside a closed form (stored as given)."""
    types = FIELD_TYPES.get(portal_type)
    if types is None:
        return "StringField"  # an open form: every property is a string field
    return types.get(name)


def format_version(dt):
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_version(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_rfc822(dt):
    dt = dt.astimezone(UTC)
    return "%s, %02d %s %04d %02d:%02d:%02d +0000" % (
        _DAYS[dt.weekday()], dt.day, _MONTHS[dt.month - 1], dt.year, dt.hour, dt.minute, dt.second)


_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
                  r"(Z|[+-]\d{2}(?::?\d{2})?)?)?$")


def parse_date(s):
    """Parses ISO 8601 (date, or date and time) or RFC 822; None if neither."""
    m = _ISO.match(s)
    if m:
        y, mo, d, h, mi, sec, frac, zone = m.groups()
        try:
            dt = datetime.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(sec or 0),
                                   int((frac or "0").ljust(6, "0")[:6]), tzinfo=UTC)
        except ValueError:
            return None
        if zone and zone != "Z":
            sign = -1 if zone[0] == "-" else 1
            digits = zone[1:].replace(":", "")
            offset = datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
            dt -= sign * offset
        return dt
    t = email.utils.parsedate_tz(s)
    if t is None:
        return None
    try:
        return datetime.datetime.fromtimestamp(email.utils.mktime_tz(t), UTC)
    except (OverflowError, ValueError):
        return None


def coerce(ftype, value):
    """Converts a JSON value for a field as erp5sim's coerce does; raises ValueError."""
    if value is None:
        return None
    if value == "":
        return "" if ftype in ("StringField", "TextAreaField", "EmailField") else None
    if ftype in ("IntegerField", "FloatField"):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError("not a number")
        try:
            n = float(value.strip() if isinstance(value, str) else value)
        except ValueError:
            raise ValueError("You did not enter a floating point number.")
        if math.isinf(n) or math.isnan(n):
            raise ValueError("not a number")
        if ftype == "IntegerField":
            if n != math.floor(n):
                raise ValueError("You did not enter an integer.")
            return int(n)
        return n
    if ftype == "DateTimeField":
        dt = parse_date(value.strip()) if isinstance(value, str) else None
        if dt is None:
            raise ValueError("You did not enter a valid date and time.")
        return format_rfc822(dt)
    if ftype == "CheckBoxField":
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return value in ("1", "on", "true")
        raise ValueError("You did not check or uncheck the box.")
    if ftype == "EmailField":
        at = value.rfind("@") if isinstance(value, str) else -1
        if at < 1 or "." not in value[at + 1:] or re.search(r"[ \t\n]", value):
            raise ValueError("You did not enter a valid email address.")
        return value
    if not isinstance(value, str):
        raise ValueError("You did not enter a string.")
    return value


def _strict_equal(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b and (a is None) == (b is None) and isinstance(a, str) == isinstance(b, str)


class FakeSite(object):
    """Documents in memory, a settable clock, and a catalog that indexes at once."""

    def __init__(self, now):
        self.now = now
        self.docs = {}  # id -> {"portal_type", "properties", "modified"}
        self.serial = 0
        self.index = {}  # id -> serial of its last change
        self.last_id = {}  # container -> highest numeric id stored

    # -- setup and inspection ------------------------------------------------------

    def load(self, doc_id, portal_type, version, properties):
        self.docs[doc_id] = {"portal_type": portal_type, "properties": dict(properties),
                             "modified": parse_version(version)}
        self._note_id(doc_id)
        self._reindex(doc_id)

    def _note_id(self, doc_id):
        parent, _, last = doc_id.rpartition("/")
        if last.isdigit() and str(int(last)) == last and int(last) > self.last_id.get(parent, 0):
            self.last_id[parent] = int(last)

    def _reindex(self, doc_id):
        self.serial += 1
        self.index[doc_id] = self.serial

    def _bump(self, doc_id):
        doc = self.docs[doc_id]
        t = self.now
        prev = doc["modified"]
        if prev is not None and t <= prev:
            t = prev + MICRO
        doc["modified"] = t
        self._reindex(doc_id)

    # -- Site interface --------------------------------------------------------------

    def getState(self, doc_id):
        doc = self.docs.get(doc_id)
        if doc is None:
            return None
        return {"id": doc_id, "portal_type": doc["portal_type"],
                "version": format_version(doc["modified"]),
                "modification_date": format_rfc822(doc["modified"]),
                "properties": copy.deepcopy(doc["properties"])}

    def newContent(self, portal_type, parent_relative_url, fields):
        parent = parent_relative_url
        is_module = "/" not in parent and parent.endswith("_module")
        if not is_module and parent not in self.docs:
            raise ValueError("no container %s" % parent)
        doc_id = "%s/%d" % (parent, self.last_id.get(parent, 0) + 1)
        state_var, _ = workflow(portal_type)
        props = {state_var: "draft"}
        # Created first, then filled, as ERP5's newContent then edit: a bad value leaves a
        # half-made document that only the savepoint's rollback removes.
        self.docs[doc_id] = {"portal_type": portal_type, "properties": props, "modified": None}
        self._note_id(doc_id)
        for k in sorted(fields):
            props[k] = self._coerce(portal_type, k, fields[k])
        self._bump(doc_id)
        return doc_id

    def _coerce(self, portal_type, name, value):
        ftype = field_type(portal_type, name)
        if ftype is None:
            return value
        return coerce(ftype, value)

    def edit(self, doc_id, fields):
        doc = self.docs[doc_id]
        changed = False
        for k in sorted(fields):  # a failure leaves earlier fields set: the savepoint undoes them
            v = self._coerce(doc["portal_type"], k, fields[k])
            if k not in doc["properties"] or not _strict_equal(doc["properties"][k], v):
                changed = True
            doc["properties"][k] = v
        if changed:
            self._bump(doc_id)

    def transition(self, doc_id, transition, comment):
        doc = self.docs[doc_id]
        state_var, transitions = workflow(doc["portal_type"])
        if transition not in transitions:
            raise Rejected("not_allowed", "no transition %r for %s" % (transition, doc["portal_type"]))
        sources, target = transitions[transition]
        state = doc["properties"].get(state_var) or "draft"
        if state not in sources:
            raise Rejected("not_allowed", "transition %r is not available in state %r" % (transition, state))
        doc["properties"][state_var] = target
        self._bump(doc_id)

    def savepoint(self):
        return copy.deepcopy((self.docs, self.serial, self.index, self.last_id))

    def rollback(self, savepoint):
        self.docs, self.serial, self.index, self.last_id = copy.deepcopy(savepoint)

    def overlapStart(self, key, seconds):
        """This catalog indexes at once, in commit order: nothing commits late."""
        return key

    def searchChanges(self, portal_type, query, after, limit):
        match = compile_query(query)
        cands = []
        for doc_id, serial in self.index.items():
            if after is not None and serial <= after:
                continue
            doc = self.docs[doc_id]
            if portal_type and doc["portal_type"] != portal_type:
                continue
            row = dict(doc["properties"], portal_type=doc["portal_type"])
            if match(row):
                cands.append((serial, doc_id))
        cands.sort()
        return [{"id": doc_id, "key": serial} for serial, doc_id in cands[:limit]]


_TERM = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(?:"((?:[^"\\]|\\")*)"|([^\s()"]+))\s*')


def compile_query(query):
    """Compiles the subset of jIO queries the vectors use: `key:"value"` or `key:value`
    terms joined by AND or juxtaposition, matched with "="; "" matches everything."""
    terms = []
    rest = query.strip()
    while rest:
        m = _TERM.match(rest)
        if not m:
            raise InvalidQuery("unsupported query %r" % query)
        terms.append((m.group(1), m.group(2).replace('\\"', '"') if m.group(2) is not None else m.group(3)))
        rest = rest[m.end():]
        if rest.startswith("AND "):
            rest = rest[4:]
    def match(row):
        for key, value in terms:
            v = row.get(key)
            if v is None or (v if isinstance(v, str) else format_number(v)) != value:
                return False
        return True
    return match


def format_number(v):
    if isinstance(v, float) and v == math.floor(v):
        return str(int(v))
    return str(v)
