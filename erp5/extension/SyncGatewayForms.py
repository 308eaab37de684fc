# -*- coding: utf-8 -*-
"""External Method of the sync gateway's forms request: ``ERP5Site_getSyncGatewayForms``.

It adapts the pure-Python core (``sync_gateway_forms.py``) to ERP5: a portal type's view form
is found through its type information's action (``view`` unless the gateway names another,
as ``upstream.view``), read through ERP5Form's API (groups, fields, the template field's
meta_type for proxy fields, the flags and the type keys of docs/DESIGN.md appendix A), and its workflow
graph through portal_workflow (DCWorkflow or ERP5 Workflow): the state variable, and per
state the user transitions (``*_action``) with their titles.

Install like the receiver's wrapper (../README.md): the core as a Module Component
``SyncGatewayFormsCore`` or on the Python path, this file as an Extension Component
``SyncGatewayForms``, and one External Method ``ERP5Site_getSyncGatewayForms`` (module
``SyncGatewayForms``) in a skin folder, with View for the gateway's role.
"""

try:  # the core installed as an ERP5 Module Component
    from erp5.component.module.SyncGatewayFormsCore import http_forms  # type: ignore
except ImportError:  # the core on the Python path
    from sync_gateway_forms import http_forms  # type: ignore

WORKFLOW_VARIABLES = ("validation_state", "simulation_state")

# Type keys passed through, per template field meta_type (docs/DESIGN.md appendix A).
TYPE_KEYS = {
    "ListField": ("items", "first_item"),
    "RadioField": ("items", "select_first_item", "orientation"),
    "MultiListField": ("items",),
    "MultiCheckBoxField": ("items",),
    "DateTimeField": ("date_only", "ampm_time_style", "timezone_style", "allow_empty_time", "hide_day", "hidden_day_is_last_day"),
    "FloatField": ("precision", "input_style"),
    "RelationStringField": ("catalog_index", "allow_jump", "allow_creation", "base_category"),
    "MultiRelationStringField": ("catalog_index", "allow_jump", "allow_creation", "base_category"),
}

FLAGS = ("editable", "hidden", "required")


def _value(field, key, default=None):
    try:
        return field.get_value(key)
    except Exception:  # a TALES needing a document, a key the field lacks
        return default


def _flag(v):
    return 1 if v else 0


def _pairs(v):
    """[label, value] pairs as lists of strings."""
    out = []
    for item in v or ():
        if isinstance(item, (list, tuple)) and len(item) >= 2:
            out.append([str(item[0]), str(item[1])])
        elif isinstance(item, (list, tuple)) and len(item) == 1:
            out.append([str(item[0]), str(item[0])])
        else:
            out.append([str(item), str(item)])
    return out


def meta_type(field):
    """The field's type, a ProxyField resolved to its template's."""
    mt = getattr(field, "meta_type", "")
    if mt == "ProxyField":
        try:
            return field.getRecursiveTemplateField().meta_type
        except Exception:
            return mt
    return mt


def field_object(field):
    """One field as the forms answer carries it."""
    mt = meta_type(field)
    out = {"type": mt, "title": str(_value(field, "title", "") or ""),
           "description": str(_value(field, "description", "") or "")}
    for k in FLAGS:
        if k == "required" and mt == "ListBox":
            continue
        out[k] = _flag(_value(field, k, 0))
    for k in TYPE_KEYS.get(mt, ()):
        v = _value(field, k)
        if v is None:
            continue
        if k == "items":
            v = _pairs(v)
        elif k in ("date_only", "ampm_time_style", "timezone_style", "allow_empty_time", "hide_day",
                   "hidden_day_is_last_day", "allow_jump", "allow_creation", "first_item", "select_first_item"):
            v = _flag(v)
        out[k] = v
    if mt in ("RelationStringField", "MultiRelationStringField"):
        out["portal_types"] = [x[0] if isinstance(x, (list, tuple)) else x for x in (_value(field, "portal_type") or ())]
    if mt == "ListBox":
        out["column_list"] = _pairs(_value(field, "columns"))
        out["portal_type"] = _pairs(_value(field, "portal_types"))
        lm = _value(field, "list_method")
        if lm:
            out["list_method"] = getattr(lm, "method_name", str(lm))
    return out


def form_object(form):
    """A form as the forms answer carries it: groups in order, the hidden group left out."""
    groups, fields = [], {}
    for group in form.get_groups():
        if group == "hidden":
            continue
        ids = []
        for field in form.get_fields_in_group(group):
            if not _value(field, "enabled", 1):
                continue
            fid = field.getId() if hasattr(field, "getId") else field.id
            ids.append(fid)
            fields[fid] = field_object(field)
        groups.append([group, ids])
    return {"form_id": form.getId() if hasattr(form, "getId") else form.id,
            "title": str(getattr(form, "title", "") or ""), "group_list": groups, "fields": fields}


def view_form_id(type_info, view):
    """The form id an action of the type names (string:${object_url}/Person_view)."""
    for action in type_info.getActionInformationList():
        if action.getReference() != view:
            continue
        text = action.getActionText() or ""
        return text.rsplit("/", 1)[-1].strip()
    return None


def workflow_object(workflow):
    """A DCWorkflow or ERP5 Workflow as the forms answer carries it; None without a state
    variable the gateway knows."""
    if hasattr(workflow, "getStateVariable"):  # ERP5 Workflow
        var = workflow.getStateVariable()
        states, titles = {}, {}
        for st in workflow.getStateValueList():
            trans = [t for t in st.getDestinationReferenceList() if t.endswith("_action")]
            states[st.getReference()] = {"title": st.getTitle(), "transitions": trans}
            for t in trans:
                tv = workflow.getTransitionValueByReference(t)
                titles[t] = {"title": (tv.getActionName() or tv.getTitle()) if tv is not None else t}
        wid = workflow.getReference()
    else:  # DCWorkflow
        var = workflow.state_var
        states, titles = {}, {}
        for sid, st in workflow.states.items():
            trans = [t for t in st.transitions if t.endswith("_action")]
            states[sid] = {"title": st.title or sid, "transitions": trans}
            for t in trans:
                tv = workflow.transitions.get(t)
                titles[t] = {"title": (getattr(tv, "actbox_name", "") or getattr(tv, "title", "") or t) if tv is not None else t}
        wid = workflow.getId()
    if var not in WORKFLOW_VARIABLES:
        return None
    return {"id": wid, "state_variable": var, "states": states, "transitions": titles}


class ERP5FormsSite(object):
    """The forms core's site over an ERP5 portal."""

    def __init__(self, portal):
        self.portal = portal

    def getForm(self, portal_type, view):
        ti = self.portal.portal_types.getTypeInfo(portal_type)
        if ti is None:
            return None
        form_id = view_form_id(ti, view) or view_form_id(ti, "view")
        form = getattr(self.portal, form_id, None) if form_id else None
        if form is None or not hasattr(form, "get_groups"):
            return None
        return form_object(form)

    def getWorkflow(self, portal_type):
        wtool = self.portal.portal_workflow
        for wid in wtool.getChainFor(portal_type):
            w = workflow_object(wtool[wid])
            if w is not None:
                return w
        return None


def ERP5Site_getSyncGatewayForms(self, REQUEST=None):
    if REQUEST.get("REQUEST_METHOD") != "POST":
        REQUEST.RESPONSE.setStatus(405)
        REQUEST.RESPONSE.setHeader("Allow", "POST")
        return b""
    body = REQUEST.get("BODY")
    if body is None:
        f = REQUEST.get("BODYFILE")
        body = b""
        if f is not None:
            f.seek(0)
            body = f.read()
    if not isinstance(body, bytes):
        body = body.encode("utf-8")
    response = http_forms(ERP5FormsSite(self.getPortalObject()), body, REQUEST.getHeader("Content-Encoding"))
    REQUEST.RESPONSE.setStatus(response.status)
    for k, v in response.headers.items():
        REQUEST.RESPONSE.setHeader(k, v)
    return response.body
