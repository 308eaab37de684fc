package policy

import (
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
