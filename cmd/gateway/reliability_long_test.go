//go:build long

package main

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// The long variants: go test -tags long -run Long -timeout 60m ./cmd/gateway

// TestCrashRestart_WithUplinkLong runs crashLongCycles kill -9 cycles.
func TestCrashRestart_WithUplinkLong(t *testing.T) {
	runCrashCycles(t, crashLongCycles, uint64(time.Now().UnixNano()))
}

// TestLinkFaults_MatrixLong runs every fault with seeds beyond the normal suite's.
func TestLinkFaults_MatrixLong(t *testing.T) {
	warmZstd(t)
	for _, f := range linkFaults {
		for seed := uint64(linkSeeds + 1); seed <= 20; seed++ {
			t.Run(fmt.Sprintf("%s/seed%d", f.name, seed), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) { runLinkFault(t, seed, f.faults) })
			})
		}
	}
}

// TestLinkFaults_RestoreAndPromoteLong runs the restore and promote scenario with more seeds.
func TestLinkFaults_RestoreAndPromoteLong(t *testing.T) {
	warmZstd(t)
	for seed := uint64(4); seed <= 40; seed++ {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { runRestoreAndPromote(t, seed) })
		})
	}
}

// TestLinkFaults_OutageAndFlappingLong runs the long outage and the flapping link with more
// seeds.
func TestLinkFaults_OutageAndFlappingLong(t *testing.T) {
	warmZstd(t)
	for seed := uint64(4); seed <= 30; seed++ {
		t.Run(fmt.Sprintf("outage/seed%d", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { runLongOutage(t, seed) })
		})
		t.Run(fmt.Sprintf("flapping/seed%d", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { runFlapping(t, seed) })
		})
	}
}
