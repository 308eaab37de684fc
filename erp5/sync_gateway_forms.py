# -*- coding: utf-8 -*-
"""Pure-Python core of the receiver's forms request (ERP5Site_getSyncGatewayForms).

One request returns what a site needs to render ERP5's forms offline: for each portal type
it names, the view form (form id, title, groups, fields with their flags and type keys) and
the workflow graph (state variable, the transitions of each state, their titles); then the
same for the portal types the forms' listboxes list (an order's lines). A type whose tag the
gateway sends in ``known`` is answered ``{"portal_type", "tag", "unchanged": true}``, so a
daily refresh of unchanged forms costs a few hundred bytes.

Request (JSON, optionally gzip-encoded)::

    {"gateway": "site-a", "view": "view", "portal_types": ["Person", "Sale Order"],
     "known": {"Person": "<tag>"}}

Answer, in the request's encoding::

    {"types": [{"portal_type": "Person", "tag": "<tag>", "unchanged": true},
               {"portal_type": "Sale Order", "tag": "<tag>", "form": {...}, "workflow": {...}},
               {"portal_type": "Sale Order Line", "tag": "<tag>", "form": {...}, "workflow": null}]}

The form object::

    {"form_id": "SaleOrder_view", "title": "Sale Order",
     "group_list": [["left", ["my_title", "my_destination_title"]], ["bottom", ["listbox"]]],
     "fields": {"my_title": {"type": "StringField", "title": "Title", "description": "",
                             "editable": 1, "hidden": 0, "required": 0},
                "my_destination_title": {"type": "RelationStringField", ..., "base_category": "destination",
                                         "portal_types": ["Organisation"], "catalog_index": "title"},
                "listbox": {"type": "ListBox", ..., "portal_type": [["Sale Order Line", "Sale Order Line"]],
                            "column_list": [["resource_title", "Product"], ...]}}}

The workflow object::

    {"id": "order_workflow", "state_variable": "simulation_state",
     "states": {"draft": {"title": "Draft", "transitions": ["plan_action", "confirm_action"]}},
     "transitions": {"plan_action": {"title": "Plan"}, "confirm_action": {"title": "Confirm"}}}

The tag of a type is the hex SHA-256 of ``{"form": form, "workflow": workflow}`` as
canonical JSON (keys sorted, no spaces, UTF-8 unescaped); the Go test double computes the
same, and both replay ``testdata/forms/*.json``.

The site object gives the data: ``getForm(portal_type, view)`` returns the form object (or
None when the type has none) and ``getWorkflow(portal_type)`` the workflow object (or None).
"""

import gzip
import hashlib
import json

MAX_TYPES = 200
MAX_BODY = 1 << 20


class FormsError(Exception):
    """A bad request: answered 400 {"error": "invalid", "message": ...}."""


class Response(object):
    """An HTTP answer: status, headers and body bytes."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body


def canonical(value):
    """Canonical JSON bytes: sorted keys, no spaces, UTF-8 without escapes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def tag(form, workflow):
    """The tag of one type's answer."""
    return hashlib.sha256(canonical({"form": form, "workflow": workflow})).hexdigest()


def embedded_types(form):
    """The portal types a form's listboxes list, in group order."""
    out = []
    if not form:
        return out
    fields = form.get("fields") or {}
    for group in form.get("group_list") or []:
        for field_id in group[1]:
            if isinstance(field_id, list):
                field_id = field_id[0]
            field = fields.get(field_id) or {}
            if field.get("type") != "ListBox":
                continue
            for pair in field.get("portal_type") or []:
                pt = pair[0] if isinstance(pair, list) else pair
                if pt and pt not in out:
                    out.append(pt)
    return out


def parse_request(request):
    """Checks a decoded request; returns (portal types, known tags, view)."""
    if not isinstance(request, dict):
        raise FormsError("the request is not a JSON object")
    for key in ("gateway", "view"):
        if key in request and request[key] is not None and not isinstance(request[key], str):
            raise FormsError("%s must be a string" % key)
    types = request.get("portal_types")
    if not isinstance(types, list):
        raise FormsError("portal_types must be a list")
    if len(types) > MAX_TYPES:
        raise FormsError("at most %d portal_types" % MAX_TYPES)
    out = []
    for pt in types:
        if not isinstance(pt, str) or not pt.strip():
            raise FormsError("portal_types must hold non-empty strings")
        if pt not in out:
            out.append(pt)
    known = request.get("known")
    if known is None:
        known = {}
    if not isinstance(known, dict):
        raise FormsError("known must be an object")
    for k, v in known.items():
        if not isinstance(v, str):
            raise FormsError("known[%r] must be a string" % k)
    return out, known, request.get("view") or "view"


def answer(request, site):
    """The answer object of a decoded request (raises FormsError on a bad one)."""
    types, known, view = parse_request(request)
    out = []
    i = 0
    while i < len(types):
        pt = types[i]
        i += 1
        form = site.getForm(pt, view)
        workflow = site.getWorkflow(pt)
        for e in embedded_types(form):
            if e not in types:
                types.append(e)
        t = tag(form, workflow)
        if known.get(pt) == t:
            out.append({"portal_type": pt, "tag": t, "unchanged": True})
        else:
            out.append({"portal_type": pt, "tag": t, "form": form, "workflow": workflow})
    return {"types": out}


def http_forms(site, body, encoding=None):
    """Answers a forms POST: body bytes in encoding (None or "gzip")."""
    headers = {"Content-Type": "application/json"}
    try:
        if encoding == "gzip":
            try:
                body = gzip.decompress(body)
            except Exception:
                raise FormsError("the body is not gzip")
            if len(body) > MAX_BODY:
                raise FormsError("the body is too large")
        elif encoding not in (None, "", "identity"):
            return Response(415, headers, canonical({"error": "unsupported_encoding", "message": "encoding %s" % encoding}))
        try:
            request = json.loads(body.decode("utf-8"))
        except ValueError:
            raise FormsError("the body is not JSON")
        result = answer(request, site)
    except FormsError as e:
        return Response(400, headers, canonical({"error": "invalid", "message": str(e)}))
    out = canonical(result)
    if encoding == "gzip":
        headers["Content-Encoding"] = "gzip"
        out = gzip.compress(out)
    return Response(200, headers, out)


class DictSite(object):
    """A site whose forms and workflows are dicts by portal type (tests, vectors)."""

    def __init__(self, forms, workflows):
        self.forms = forms
        self.workflows = workflows

    def getForm(self, portal_type, view):
        return self.forms.get(portal_type)

    def getWorkflow(self, portal_type):
        return self.workflows.get(portal_type)
