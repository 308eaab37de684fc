package sqlite

import (
	"runtime"
	"syscall"
)

// queryNice is the nice value of the threads queries run on: the kernel then serves gets,
// writes and the LAN first when the processors are busy (docs/DESIGN.md §4).
const queryNice = 10

// runLowPriority runs fn on an OS thread of its own whose scheduling priority is lowered. The
// thread is locked to the goroutine and never unlocked, so it ends with it: no other
// goroutine ever runs at the lowered priority. A panic in fn is raised again in the caller.
func runLowPriority(fn func()) {
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		runtime.LockOSThread()
		syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), queryNice) // best effort
		fn()
	}()
	if p := <-done; p != nil {
		panic(p)
	}
}
