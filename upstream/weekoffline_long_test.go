//go:build long

package upstream

import (
	"testing"
	"time"
)

// The long variant: go test -tags long -run TestWeekOffline_Long -timeout 60m -v ./upstream/

// TestWeekOffline_Long is the week-offline scenario at full size: 50,000 writes from 8 peers
// over a week offline (virtual time), then the drain through 10% faults and a flapping link,
// with two kill -9 during it.
func TestWeekOffline_Long(t *testing.T) {
	f := runWeekOffline(t, weekOffline{writes: 50_000, peers: 8, docs: 20_000, offline: 7 * 24 * time.Hour,
		crashes: 2, seed: uint64(time.Now().UnixNano()), maxEntries: 1000})
	t.Log(f)
}
