package policy

import (
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/query"
)

// ReasonQueryTooCostly refines gateway.EINVALID: an allDocs whose estimated cost is over the
// role's limits.max_query_cost; it did not run.
const ReasonQueryTooCostly = "query_too_costly"

// DefaultMaxQueryCost is limits.max_query_cost when a role does not set it: twenty million
// term-documents, about two hundred keyed terms over a hundred thousand documents, or a
// clerk's search box (one term per readable field) over two million. A query of a few terms
// over the largest replicas stays far below it.
const DefaultMaxQueryCost = 20_000_000

// DefaultQueryTimeout is limits.query_timeout when a role does not set it.
const DefaultQueryTimeout = 5 * time.Second

// KeylessWeight is the cost of a key-less (full-text) term, per document, for a role that
// reads every field: it is matched against every property, so it counts as that many keyed
// terms. (For a role with a field list, it is one LIKE term per readable field.)
const KeylessWeight = 8

// QueryCost estimates what an allDocs of role with query q costs before it runs: the query's
// terms as the role runs them (a key-less term is one term per readable field, or
// KeylessWeight for a role reading every field; a keyed term is one) times the documents its
// scope may scan: the documents of the portal types the role may list, counted from counts
// (live documents by portal type). The estimate depends only on what the role may read, never
// on what q names: a query naming a type the role may not use costs what one naming a type
// without documents does (docs/DESIGN.md §3, Errors).
func (e *Engine) QueryCost(peer, role string, q query.Query, counts map[string]int) int64 {
	r := e.roles[role]
	if r == nil {
		return 0
	}
	terms := r.terms(q)
	if terms == 0 {
		return 0
	}
	return int64(terms) * int64(e.scanned(r, peer, counts))
}

// CheckQueryCost refuses an allDocs whose QueryCost is over role's limits.max_query_cost, with
// gateway.EINVALID and ReasonQueryTooCostly.
func (e *Engine) CheckQueryCost(peer, role string, q query.Query, counts map[string]int) error {
	r := e.roles[role]
	if r == nil || r.limits.MaxQueryCost <= 0 {
		return nil
	}
	if cost := e.QueryCost(peer, role, q, counts); cost > int64(r.limits.MaxQueryCost) {
		return gateway.ReasonErrorf(gateway.EINVALID, ReasonQueryTooCostly,
			"the query is too costly to run here: %d terms over %d documents is more than role %s may ask (%d); use fewer terms or keyed ones",
			r.terms(q), e.scanned(r, peer, counts), r.name, r.limits.MaxQueryCost)
	}
	return nil
}

// terms counts q's leaves as the role runs them.
func (r *role) terms(q query.Query) int {
	switch q := q.(type) {
	case *query.Simple:
		if q == nil {
			return 0
		}
		if q.Key != "" {
			return 1
		}
		if r.allFields {
			return KeylessWeight
		}
		return max(len(r.fields), 1)
	case *query.Complex:
		if q == nil {
			return 0
		}
		n := 0
		for _, c := range q.Queries {
			n += r.terms(c)
		}
		return n
	}
	return 0
}

// scanned returns how many documents of counts the role's allDocs may touch: those of the
// portal types it may list (all of them when its rules name every type).
func (e *Engine) scanned(r *role, peer string, counts map[string]int) int {
	total := 0
	for _, n := range counts {
		total += n
	}
	types, err := e.listTypes(r, peer)
	if err != nil {
		return 0
	}
	if types == nil {
		return total
	}
	if c, ok := types.(*query.Complex); ok && c.Operator == "NOT" {
		return total - typeCount(c.Queries[0], counts) // every type but the denied ones
	}
	return typeCount(types, counts)
}

// typeCount sums counts over the portal types of a typeIn query.
func typeCount(q query.Query, counts map[string]int) int {
	switch q := q.(type) {
	case *query.Simple:
		return counts[q.Value]
	case *query.Complex:
		n := 0
		for _, c := range q.Queries {
			n += typeCount(c, counts)
		}
		return n
	}
	return 0
}
