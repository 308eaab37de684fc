package main

import (
	"context"
	"sync"
	"time"

	"sitesync.example/gateway"
	"sitesync.example/gateway/lan"
	"sitesync.example/gateway/rpc"
)

// statusEvery bounds how often `status` notifications go out: the outbox changes with every
// write, and a page only needs its status bar to follow within a second.
const statusEvery = time.Second

// statusNotifier sends the status notification (docs/DESIGN.md §3) to every open channel when the
// outbox or the link changes, at most once per statusEvery, computing the shared part once.
type statusNotifier struct {
	lan *lan.Server
	svc *rpc.Service

	mu      sync.Mutex
	pending bool
	last    time.Time
	stopped bool
	timer   *time.Timer
	sending sync.WaitGroup
}

// poke asks for a notification; several pokes within statusEvery make one.
func (n *statusNotifier) poke(ctx context.Context) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pending || n.stopped {
		return
	}
	n.pending = true
	wait := time.Until(n.last.Add(statusEvery))
	n.sending.Add(1)
	n.timer = time.AfterFunc(max(wait, 0), func() {
		defer n.sending.Done()
		n.mu.Lock()
		n.pending, n.last = false, time.Now()
		stopped := n.stopped
		n.mu.Unlock()
		if stopped || ctx.Err() != nil {
			return
		}
		base, err := n.svc.Status(ctx, gateway.Actor{})
		if err != nil {
			return
		}
		n.lan.NotifyStatus(func(a gateway.Actor) (any, error) {
			r := *base
			r.Peer, r.Role = a.Peer, a.Role
			return &r, nil
		})
	})
}

// stop ends the notifications before the database closes: a pending one is cancelled, one
// being sent is waited for, and later pokes do nothing.
func (n *statusNotifier) stop() {
	n.mu.Lock()
	n.stopped = true
	if n.timer != nil && n.timer.Stop() {
		n.sending.Done() // its function will not run
	}
	n.mu.Unlock()
	n.sending.Wait()
}
