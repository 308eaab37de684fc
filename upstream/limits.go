package upstream

import "fmt"

// learnTooLarge remembers that ERP5 (or its front end) refused a batch of entries entries
// and size compressed bytes with 413: later batches are claimed at most half that, whatever
// the capability advertises, so that a drain does not send the oversized batch again.
func (u *Uplink) learnTooLarge(entries, size int) {
	u.mu.Lock()
	n, b := max(entries/2, 1), max(size/2, 1)
	changed := false
	if entries > 1 && (u.tooLargeEntries == 0 || n < u.tooLargeEntries) {
		u.tooLargeEntries, changed = n, true
	}
	if size > 0 && (u.tooLargeBytes == 0 || b < u.tooLargeBytes) {
		u.tooLargeBytes, changed = b, true
	}
	n, b = u.tooLargeEntries, u.tooLargeBytes
	u.mu.Unlock()
	if changed {
		u.Logger.Warn("ERP5 refused a batch as too large (413): later batches stay under the learned limit",
			"refused_entries", entries, "refused_bytes", size, "max_entries", n, "max_bytes", b)
	}
}

// learnedLimits lowers a batch's entry count and compressed byte target to the limits
// learned from 413 answers.
func (u *Uplink) learnedLimits(entries, target int) (int, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.tooLargeEntries > 0 {
		entries = min(entries, u.tooLargeEntries)
	}
	if u.tooLargeBytes > 0 {
		target = min(target, u.tooLargeBytes)
	}
	return entries, target
}

// noteBadVersions raises an alarm when results carried a version that is not a string: the
// entries were settled from their status (an applied write is done, its state stored), but
// their documents' versions are not recorded, so the downlink cannot tell the site's own
// edit from a later one at ERP5 and fetches them back.
func (u *Uplink) noteBadVersions(res []Result) {
	var seqs []int64
	var sample string
	for _, r := range res {
		if r.BadVersion != "" {
			seqs = append(seqs, r.Seq)
			sample = r.BadVersion
		}
	}
	if len(seqs) == 0 {
		return
	}
	if len(sample) > 60 {
		sample = sample[:60] + "…"
	}
	u.alarm(Alarm{Kind: AlarmBadVersion, Seqs: seqs, Message: fmt.Sprintf(
		"ERP5 answered a version that is not a string (%s) for seq %s: the entries are settled from their status and their state stored, but the versions are not recorded (check the receiver)",
		sample, FormatSeqs(seqs))})
}
