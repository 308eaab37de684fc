package rpc

import (
	"context"
	"errors"
	"sync"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/query"
	"sitesync.example/gateway/sqlite"
)

// ReasonTimeout refines gateway.EUNAVAILABLE: an allDocs still running at the role's
// limits.query_timeout was interrupted.
const ReasonTimeout = "timeout"

// countsMaxAge is how long the documents-by-type counts that query costs are estimated from
// are reused: an estimate needs the size of the replica, not its last document.
const countsMaxAge = 10 * time.Second

// typeCounts caches sqlite.DB.TypeCounts.
type typeCounts struct {
	mu     sync.Mutex
	counts map[string]int
	at     time.Time
}

// checkCost refuses, before it runs, an allDocs whose estimated cost is over the role's
// budget (policy.Engine.CheckQueryCost; docs/DESIGN.md §4). q is the query as the peer asked
// it: the estimate depends on what the role may read, not on what q names.
func (s *Service) checkCost(ctx context.Context, a gateway.Actor, q query.Query) error {
	if s.Policy.Limits(a.Role).MaxQueryCost <= 0 || q == nil {
		return nil
	}
	c := &s.counts
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil || time.Since(c.at) > countsMaxAge {
		counts, err := s.DB.TypeCounts(ctx)
		if err != nil {
			return err
		}
		c.counts, c.at = counts, time.Now()
	}
	return s.Policy.CheckQueryCost(a.Peer, a.Role, q, c.counts)
}

// runQuery runs a scoped query under the role's limits.query_timeout: past it SQLite
// interrupts the statement and the peer gets 503 timeout.
func (s *Service) runQuery(ctx context.Context, a gateway.Actor, q query.Query, opts query.Options) (*sqlite.QueryResult, error) {
	timeout := s.Policy.Limits(a.Role).QueryTimeout
	if timeout <= 0 {
		return s.DB.Query(ctx, q, opts)
	}
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := s.DB.Query(qctx, q, opts)
	if err != nil && ctx.Err() == nil && errors.Is(qctx.Err(), context.DeadlineExceeded) {
		return nil, gateway.ReasonErrorf(gateway.EUNAVAILABLE, ReasonTimeout,
			"the query ran longer than %s and was stopped; narrow it (fewer or keyed terms)", timeout)
	}
	return res, err
}
