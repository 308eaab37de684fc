package upstream

// Busy reports whether the uplink is sending now (a round is running, not a backoff wait):
// the downlink's UplinkBusy, so that writes go first on the shared link. An uplink waiting
// for a retry, or idle, is not busy.
func (u *Uplink) Busy() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.interrupt != nil && !u.waiting && !u.paused && !u.closed
}
