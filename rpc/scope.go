package rpc

import (
	"context"

	"sitesync.example/gateway"
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
