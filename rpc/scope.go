package rpc

import (
	"fmt"
	"strings"

	"context"

	"sitesync.example/gateway"
	"sitesync.example/gateway/policy"
	"sitesync.example/gateway/sqlite"
)

// readableIDs returns those of ids whose document (a removed one's tombstone included) the
// peer may read; ids the replica lacks are left out too, as nothing can wait for them.
func (s *Service) readableIDs(ctx context.Context, a gateway.Actor, ids []string) ([]string, error) {
	bodies, err := s.DB.DocumentBodies(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		raw, ok := bodies[id]
		if !ok {
			continue
		}
		body, err := sqlite.DecodeObject(raw)
		if err != nil {
			return nil, err
		}
		if s.Policy.CanRead(a.Peer, a.Role, id, body) {
			out = append(out, id)
		}
	}
	return out, nil
}

// checkParent decides the parent_relative_url of a post (docs/DESIGN.md §3): a module must be
// the one of the new document's type; a document is decided by the policy (CheckContainer).
func (s *Service) checkParent(a gateway.Actor, parent, pt string, pdoc map[string]any) error {
	if strings.Contains(parent, "/") {
		if pdoc == nil {
			return policy.ParentAbsent(parent)
		}
		return s.Policy.CheckContainer(a.Peer, a.Role, parent, pt, pdoc)
	}
	modules := s.DB.Modules
	if modules == nil {
		modules = gateway.DefaultModules()
	}
	if want := gateway.ModuleOf(pt, modules); parent != want {
		return policy.ParentInvalid(fmt.Sprintf("%s documents live in %s, not %s", pt, want, parent))
	}
	return nil
}

// mayHold reports whether id, which the replica lacks, may be a document the peer reads:
// whether its module is that of a type the role may get or list. Otherwise ERP5 is not asked
// and the answer is 404 at once, as for an id that does not exist — not 503 while the link
// is down, which would tell a hidden document from a missing one.
func (s *Service) mayHold(a gateway.Actor, id string) bool {
	types, all := s.Policy.ReadableTypes(a.Role)
	if all {
		return true
	}
	modules := s.DB.Modules
	if modules == nil {
		modules = gateway.DefaultModules()
	}
	module, _, _ := strings.Cut(id, "/")
	// A child lives in its container's module (a Sale Order Line in sale_order_module).
	seen := map[string]bool{}
	for len(types) > 0 {
		t := types[0]
		types = types[1:]
		if seen[t] {
			continue
		}
		seen[t] = true
		if gateway.ModuleOf(t, modules) == module {
			return true
		}
		containers, any := s.Policy.Containers(t)
		if any {
			return true
		}
		types = append(types, containers...)
	}
	return false
}
