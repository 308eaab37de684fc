//go:build !linux

package sqlite

// runLowPriority runs fn; only Linux lowers the priority of a query's thread.
func runLowPriority(fn func()) { fn() }
