package policy

import (
	"fmt"

	"slices"

	"sitesync.example/gateway"
)

// CanRead reports whether a peer of role may know that doc (a stored document) exists: a get
// of it is allowed, or it is within the role's read.scope and of a portal type the role may
// list. Whatever the role may not read is answered exactly as a document that does not exist
// (docs/DESIGN.md §3, Errors): 404 for get, put, remove and action, nothing waiting for sync.
// A document the role reads but may not change that way keeps its 403 with a reason.
func (e *Engine) CanRead(peer, role, id string, doc map[string]any) bool {
	r := e.roles[role]
	if r == nil || doc == nil {
		return false
	}
	if e.AuthorizeGet(peer, role, id, doc) == nil {
		return true
	}
	if r.scope != nil && !e.matchDoc(r.scope, doc) {
		return false
	}
	types, err := e.listTypes(r, peer)
	if err != nil {
		return false
	}
	return types == nil || e.matchDoc(types, doc)
}

// NotFound is the refusal of a document the peer may not read: the very error the replica
// gives for an id it lacks, so that the two cannot be told apart.
func NotFound(id string) error {
	return gateway.Errorf(gateway.ENOTFOUND, "document %s not found", id)
}

// MayContain reports whether a document of portal type parent may hold a new document of
// portal type pt (a post whose parent_relative_url is a document, not a module): the schema of
// pt lists parent under `containers:` (or says "*"). A type without that key lives in its
// module only.
func (e *Engine) MayContain(parent, pt string) bool {
	s := e.schemas[pt]
	return s != nil && (s.anyContainer || slices.Contains(s.containers, parent))
}

// CheckContainer decides the document a post's parent_relative_url names (docs/DESIGN.md §3):
// parent (its stored body, id parentID) must be readable by the peer — else it is answered as
// absent, with the error the replica gives for a parent it lacks — and of a portal type that
// may hold a document of type pt (MayContain). Errors: gateway.EINVALID naming
// parent_relative_url.
func (e *Engine) CheckContainer(peer, role, parentID, pt string, parent map[string]any) error {
	if !e.CanRead(peer, role, parentID, parent) {
		return ParentAbsent(parentID)
	}
	ppt, _ := parent["portal_type"].(string)
	if !e.MayContain(ppt, pt) {
		return ParentInvalid(fmt.Sprintf("a %s cannot hold %s documents", ppt, pt))
	}
	return nil
}

// ParentAbsent is the refusal of a post whose parent_relative_url names no document (or one
// the peer may not read): EINVALID on that field.
func ParentAbsent(parentID string) error {
	return ParentInvalid(fmt.Sprintf("no document %s to hold the new one", parentID))
}

// ParentInvalid is EINVALID on parent_relative_url with msg.
func ParentInvalid(msg string) error {
	return &gateway.Error{Code: gateway.EINVALID, Message: "parent_relative_url: " + msg,
		Fields: map[string]string{"parent_relative_url": msg}}
}

// ReadableTypes returns the portal types role has an allow rule to get or list (all reports
// a rule naming every type). Conditions are not evaluated: it bounds what the role may ever
// read, so that a get outside it needs no look-up (docs/DESIGN.md §3, Errors).
func (e *Engine) ReadableTypes(role string) (types []string, all bool) {
	r := e.roles[role]
	if r == nil {
		return nil, false
	}
	for _, ru := range r.allow {
		if !ru.methods.has(mGet) && !ru.methods.has(mAllDocs) {
			continue
		}
		if ru.allTypes {
			return nil, true
		}
		types = append(types, ru.typeList...)
	}
	return unique(types), false
}

// Containers returns the portal types the schema of pt lets hold it (`containers:`); all
// reports "*".
func (e *Engine) Containers(pt string) (types []string, all bool) {
	s := e.schemas[pt]
	if s == nil {
		return nil, false
	}
	return append([]string(nil), s.containers...), s.anyContainer
}
