package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"sitesync.example/gateway"
	"sitesync.example/gateway/outbox"
)

// Store is the database side of the uplink; *sqlite.DB provides most of it (cmd/gateway
// adapts the rest). Each method that changes something is one committed transaction, and
// the replica changes that go with an answer (id_map, renames, upstream_body) are the
// store's.
type Store interface {
	// Epoch returns the running epoch.
	Epoch(ctx context.Context) (string, error)
	// Claim claims the next batch (one epoch, one site, at most one entry per document) within
	// budget and commits it before returning: merges folded, entries inflight with attempts+1,
	// never-sent entries encoded by enc with their mode, bytes and hash stored.
	Claim(ctx context.Context, budget outbox.Budget, enc outbox.Encoder) (*outbox.Batch, error)
	// Settle records ERP5's answers (and the uplink's verdicts) in one transaction.
	Settle(ctx context.Context, results []outbox.Result) ([]outbox.Settled, error)
	// NeedResults returns, per epoch, the seqs to settle through the results query before
	// anything of them is resent: uncertain entries and unchecked entries of earlier epochs.
	NeedResults(ctx context.Context, limit int) (map[string][]int64, error)
	// OutboxEntry returns one entry by seq.
	OutboxEntry(ctx context.Context, seq int64) (*outbox.Entry, error)
	// RecordCreated records, before the edit that follows, the ERP5 id a stock newContent gave
	// a post's document (in the entry's answer, as {"status":"created","id":ID}), so that a
	// retry repeats the edit only (docs/DESIGN.md §7, Stock mode).
	RecordCreated(ctx context.Context, seq int64, id string) error
	// RecoverInflight makes entries a stopped process left inflight uncertain.
	RecoverInflight(ctx context.Context) (int, error)
	// NextDue returns when the earliest deferred entry is due; the zero time when none is.
	NextDue(ctx context.Context) (time.Time, error)
	// OutboxCounts returns the number of entries per open state.
	OutboxCounts(ctx context.Context) (map[string]int, error)
	// SetMeta records a value in the database's meta table (MetaRetentionDays).
	SetMeta(ctx context.Context, key, value string) error
}

// MetaRetentionDays is the meta key where the uplink records the receiver's retention_days:
// `gateway restore` refuses a backup older than that.
const MetaRetentionDays = "erp5_retention_days"

// Protocol choices (upstream.protocol).
const (
	ProtocolAuto  = "auto"  // the receiver when advertised, else stock
	ProtocolBatch = "batch" // the receiver only; entries wait while it is missing
	ProtocolStock = "stock" // the stock HATEOAS interface only
)

// Uplink defaults.
const (
	// DefaultBatchBytes is the compressed size a batch aims at: ~0.7 s at 384 kbit/s, cheap
	// enough to resend whole, big enough that batching pays (docs/DESIGN.md appendix C: a few hundred
	// entries). With DefaultPipeline batches in flight, the link carries ~1.4 s of data per
	// round trip: a drain is paced by its bytes, not by round trips.
	DefaultBatchBytes = 32 << 10
	// DefaultMaxEntries bounds a batch when the receiver says nothing.
	DefaultMaxEntries = 1000
	// DefaultStockEntries is how many entries one stock round claims; each costs 2–3 round
	// trips, so a round of 20 is about a minute on the satellite.
	DefaultStockEntries = 20
	// DefaultProbeInterval is how often the capability is asked again.
	DefaultProbeInterval = time.Hour
	// DefaultInitialBackoff and DefaultMaxBackoff bound the retry waits: the first is a few
	// round trips; the last keeps a dead link from being polled more than every 5 minutes.
	DefaultInitialBackoff = 2 * time.Second
	DefaultMaxBackoff     = 5 * time.Minute
	// resultsChunk is the most seqs one results query asks about: ranges keep contiguous
	// seqs short, and 500 scattered ones still make a URL under 4 KB (front ends cap them).
	resultsChunk = 500
	// splitAfter is how many consecutive 5xx answers a batch gets before it is split.
	splitAfter = 2
	// assumedRatio is the compression ratio assumed before a batch has been measured: a little
	// above what zstd and gzip reach on ERP5-like JSON (docs/DESIGN.md appendix C: 542 KB → 74 KB).
	assumedRatio = 0.2
	// DefaultPipeline is how many batches may be in flight at once.
	DefaultPipeline = 2
)

// Modes the uplink runs in.
const (
	ModeUnknown = ""      // the capability is not known yet
	ModeBatch   = "batch" // the receiver answers
	ModeStock   = "stock" // no receiver
)

// Alarm kinds.
const (
	AlarmUnauthorized = "unauthorized" // ERP5 refused the credentials (401)
	AlarmForbidden    = "forbidden"    // the receiver refused the user (403)
	AlarmSeqReused    = "seq_reused"   // ERP5 holds another payload under a key: uplink paused
	AlarmBudget       = "budget"       // today's byte budget is spent
	AlarmBadVersion   = "bad_version"  // ERP5 answered a version the gateway cannot read
)

// Alarm is a condition an operator must look at.
type Alarm struct {
	Kind    string    `json:"kind"`
	Message string    `json:"message"`
	Seqs    []int64   `json:"seqs,omitempty"`
	At      time.Time `json:"at"`
}

// Status is what the uplink shows to `gateway sync status`, the status RPC and the status
// page.
type Status struct {
	Link LinkStatus `json:"link"`
	// Mode is batch, stock, or "" before the capability is known.
	Mode       string       `json:"mode"`
	Protocol   string       `json:"protocol"`
	Capability *Capability  `json:"capability,omitempty"`
	Paused     bool         `json:"paused"`
	PauseCause string       `json:"pause_reason,omitempty"`
	Alarms     []Alarm      `json:"alarms,omitempty"`
	Bytes      MeterReading `json:"bytes"`
	// DailyBudget is upstream.daily_budget in bytes (0: none); BudgetSpent when today's
	// traffic reached it (the uplink then waits for the next UTC day).
	DailyBudget int64 `json:"daily_budget"`
	BudgetSpent bool  `json:"budget_spent"`
	// ClockSkew is ERP5's clock minus ours (SkewKnown false before any Date header).
	ClockSkew time.Duration `json:"clock_skew"`
	SkewKnown bool          `json:"skew_known"`
	// Outbox counts entries by state as of the last round.
	Outbox    map[string]int `json:"outbox,omitempty"`
	LastRound time.Time      `json:"last_round,omitzero"`
	// Sent and Settled count batches (or stock writes) and entries settled since Open.
	Sent    int64 `json:"sent"`
	Settled int64 `json:"settled"`
}

// Uplink drains the outbox to ERP5: the batch receiver when ERP5 advertises it, else the
// stock interface (docs/DESIGN.md §7). Set the fields, then Open; Wake, Flush, Resume and Status are
// safe for concurrent use.
type Uplink struct {
	Client *Client
	Store  Store
	// Protocol is auto, batch or stock ("" is auto).
	Protocol string
	// Modules maps portal types to their module, for a stock post without a parent.
	Modules map[string]string
	// BatchBytes is the compressed size a batch aims at (DefaultBatchBytes when 0), lowered
	// to the receiver's max_batch_bytes.
	BatchBytes int
	// MaxEntries bounds a batch (DefaultMaxEntries when 0), lowered to the receiver's.
	MaxEntries int
	// Pipeline is how many receiver batches may be in flight at once (DefaultPipeline when 0).
	Pipeline int
	// DailyBudget stops traffic for the rest of the UTC day once this many bytes crossed the
	// link (0: no budget).
	DailyBudget int64
	// Meter counts the link's bytes; it must be the one the client's transport counts into.
	Meter *Meter
	// ProbeInterval is how often the capability is asked again (DefaultProbeInterval).
	ProbeInterval time.Duration
	// InitialBackoff and MaxBackoff shape the exponential backoff with jitter.
	InitialBackoff, MaxBackoff time.Duration
	// Logger is where the uplink logs (nil: slog.Default() with subsystem=upstream).
	Logger *slog.Logger
	// Metrics records Prometheus metrics (nil: none).
	Metrics *Metrics
	// OnAlarm is called when an alarm is raised.
	OnAlarm func(Alarm)
	// OnStatus is called after each round and link change, e.g. to persist the status for
	// `gateway sync status` while serve runs.
	OnStatus func(Status)
	// Now returns the current time (nil: time.Now); timers use the time package, so tests
	// run the uplink under testing/synctest.
	Now func() time.Time

	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}
	closed bool

	link  link
	epoch string

	mu         sync.Mutex
	mode       string
	capa       *Capability
	probedAt   time.Time
	probe404   int
	paused     bool
	pauseCause string
	alarms     []Alarm
	counts     map[string]int
	lastRound  time.Time
	sent       int64
	settled    int64
	waiting    bool                    // in a backoff wait: Flush and link return cut it short
	interrupt  context.CancelCauseFunc // cancels the current backoff wait
	ratio      float64                 // compressed/plain of the last batch
	failures   map[int64]int           // consecutive 5xx answers per seq
	caps       map[int64]int           // most entries per batch for a seq that keeps failing
	needsRecv  map[int64]bool          // entries waiting for a receiver
	stockFails map[int64]int           // consecutive failed tries per stock entry
	// tooLarge are the batch limits learned from 413 answers (0: none).
	tooLargeEntries, tooLargeBytes int
	budgetSpent                    bool
	bo                             *peekBackOff
	// lastRoundErr is the key of the last round error logged.
	lastRoundErr string
}

// errInterrupted cancels a backoff wait: the operator asked for a flush, or the link came
// back.
var errInterrupted = errors.New("uplink wait interrupted")

// Open checks the configuration, recovers entries a crashed process left inflight (they
// become uncertain) and starts the loop.
func (u *Uplink) Open(ctx context.Context) error {
	if u.Client == nil || u.Store == nil {
		return errors.New("uplink: no client or store")
	}
	switch u.Protocol {
	case "":
		u.Protocol = ProtocolAuto
	case ProtocolAuto, ProtocolBatch, ProtocolStock:
	default:
		return fmt.Errorf("uplink: protocol %q is not auto, batch or stock", u.Protocol)
	}
	if err := u.Client.init(); err != nil {
		return err
	}
	if u.Logger == nil {
		u.Logger = slog.Default().With(LogKeySubsystem, "upstream")
	}
	epoch, err := u.Store.Epoch(ctx)
	if err != nil {
		return fmt.Errorf("uplink open: %w", err)
	}
	u.epoch = epoch
	if n, err := u.Store.RecoverInflight(ctx); err != nil {
		return fmt.Errorf("uplink open: %w", err)
	} else if n > 0 {
		u.Logger.Warn("entries left inflight by a stopped gateway are uncertain; ERP5's results will settle them", "count", n)
	}
	if u.ProbeInterval <= 0 {
		u.ProbeInterval = DefaultProbeInterval
	}
	if u.InitialBackoff <= 0 {
		u.InitialBackoff = DefaultInitialBackoff
	}
	if u.MaxBackoff <= 0 {
		u.MaxBackoff = DefaultMaxBackoff
	}
	if u.BatchBytes <= 0 {
		u.BatchBytes = DefaultBatchBytes
	}
	if u.MaxEntries <= 0 {
		u.MaxEntries = DefaultMaxEntries
	}
	u.wake = make(chan struct{}, 1)
	u.failures = map[int64]int{}
	u.caps = map[int64]int{}
	u.needsRecv = map[int64]bool{}
	u.stockFails = map[int64]int{}
	u.ratio = assumedRatio
	if u.Protocol == ProtocolStock {
		u.mode = ModeStock
	}
	u.link = link{logger: u.Logger, now: u.now, onReturn: u.linkReturned, onChange: u.publish}
	prev := u.Client.OnExchange
	u.Client.OnExchange = func(method, path string, status int, err error) {
		u.link.observe(method, path, status, err)
		u.Metrics.request(method, status)
		if prev != nil {
			prev(method, path, status, err)
		}
	}
	if u.Meter != nil && u.Metrics != nil {
		m := u.Metrics
		u.Meter.mu.Lock()
		u.Meter.OnAdd = func(up, down int64) {
			m.Bytes.WithLabelValues("up").Add(float64(up))
			m.Bytes.WithLabelValues("down").Add(float64(down))
		}
		u.Meter.mu.Unlock()
	}
	ctx, u.cancel = context.WithCancel(context.WithoutCancel(ctx))
	u.wg.Go(func() { u.run(ctx) })
	return nil
}

// Close stops the loop and waits for it, at most until ctx is done. An exchange cut short
// leaves its entries uncertain, settled by the results query at the next start. It is safe
// to call more than once.
func (u *Uplink) Close(ctx context.Context) error {
	u.mu.Lock()
	if u.closed || u.cancel == nil {
		u.mu.Unlock()
		return nil
	}
	u.closed = true
	u.mu.Unlock()
	u.cancel()
	done := make(chan struct{})
	go func() { u.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("uplink close: %w", ctx.Err())
	}
}

// Wake tells the uplink there is new work (a write was committed). It never blocks and does
// not cut a backoff wait short: a failing link is not retried faster because writes arrive.
func (u *Uplink) Wake() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// Flush asks the uplink to try now (`gateway outbox flush`, `gateway sync now`): it cuts a
// backoff wait short and resets the backoff, and forces a capability probe.
func (u *Uplink) Flush() {
	u.mu.Lock()
	u.probedAt = time.Time{}
	u.mu.Unlock()
	u.cutWait()
	u.Wake()
}

// Resume lifts a pause (after a seq_reused alarm, once the operator has looked).
func (u *Uplink) Resume() {
	u.mu.Lock()
	u.paused, u.pauseCause = false, ""
	u.mu.Unlock()
	u.Metrics.alarmState(nil, "", false)
	u.Flush()
}

// Status returns the uplink's current state.
func (u *Uplink) Status() Status {
	skew, known := u.Client.ClockSkew()
	u.mu.Lock()
	defer u.mu.Unlock()
	link := u.link.status()
	if !link.NextTryAt.After(u.now()) {
		// A try that is due or running is no "next try": a past time while the link works
		// would read as a wait that never ends.
		link.NextTryAt = time.Time{}
	}
	st := Status{
		Link:        link,
		Mode:        u.mode,
		Protocol:    u.Protocol,
		Paused:      u.paused,
		PauseCause:  u.pauseCause,
		Alarms:      append([]Alarm(nil), u.alarms...),
		Bytes:       u.Meter.Reading(),
		DailyBudget: u.DailyBudget,
		BudgetSpent: u.budgetSpent,
		ClockSkew:   skew,
		SkewKnown:   known,
		LastRound:   u.lastRound,
		Sent:        u.sent,
		Settled:     u.settled,
	}
	if u.capa != nil {
		c := *u.capa
		st.Capability = &c
	}
	if u.counts != nil {
		st.Outbox = make(map[string]int, len(u.counts))
		for k, v := range u.counts {
			st.Outbox[k] = v
		}
	}
	return st
}

func (u *Uplink) now() time.Time {
	if u.Now != nil {
		return u.Now()
	}
	return time.Now()
}

func (u *Uplink) publish() {
	if u.OnStatus != nil {
		u.OnStatus(u.Status())
	}
	if m := u.Metrics; m != nil {
		st := u.link.status()
		m.LinkState.Set(float64(st.State))
		if skew, ok := u.Client.ClockSkew(); ok {
			m.ClockSkew.Set(skew.Seconds())
		}
	}
}

// linkReturned is called when an exchange succeeds after the link was down: re-probe, and
// cut a backoff wait short (an exchange made by the downlink proves the line is back).
func (u *Uplink) linkReturned() {
	u.mu.Lock()
	u.probedAt = time.Time{}
	u.mu.Unlock()
	u.cutWait()
	u.Wake()
}

// cutWait cancels the current backoff wait, if the loop is in one. An interrupt while a
// round runs is ignored: that round is already trying, and honouring it could spin.
func (u *Uplink) cutWait() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.waiting && u.interrupt != nil {
		u.interrupt(errInterrupted)
	}
}

func (u *Uplink) alarm(a Alarm) {
	a.At = u.now()
	u.mu.Lock()
	replaced := false
	for i, old := range u.alarms {
		if old.Kind == a.Kind {
			u.alarms[i], replaced = a, true
		}
	}
	if !replaced {
		u.alarms = append(u.alarms, a)
	}
	paused := u.paused
	u.mu.Unlock()
	u.Metrics.alarmState([]string{a.Kind}, "", paused)
	u.Logger.Error("uplink alarm", "kind", a.Kind, "message", a.Message, "seqs", a.Seqs)
	if u.OnAlarm != nil {
		u.OnAlarm(a)
	}
}

func (u *Uplink) clearAlarm(kind string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, a := range u.alarms {
		if a.Kind == kind {
			u.alarms = append(u.alarms[:i], u.alarms[i+1:]...)
			u.Metrics.alarmState(nil, kind, u.paused)
			return
		}
	}
}

// run is the loop: drain until nothing is due, then sleep until work arrives, a deferred
// entry falls due, the next probe, the next UTC day (when the budget is spent), or ctx ends.
func (u *Uplink) run(ctx context.Context) {
	for ctx.Err() == nil {
		err := u.drain(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errInterrupted) {
			continue
		}
		if err != nil {
			u.Logger.Error("uplink stopped retrying", "err", err)
		}
		u.link.setNextTry(time.Time{})
		wait := u.idleWait(ctx)
		u.publish()
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-u.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// idleWait is how long the loop may sleep when nothing is due.
func (u *Uplink) idleWait(ctx context.Context) time.Duration {
	now := u.now()
	wait := u.ProbeInterval
	u.mu.Lock()
	paused, spent, probedAt := u.paused, u.budgetSpent, u.probedAt
	u.mu.Unlock()
	if paused {
		return 24 * time.Hour
	}
	if spent {
		y, m, d := now.UTC().Date()
		return time.Date(y, m, d+1, 0, 0, 1, 0, time.UTC).Sub(now)
	}
	if !probedAt.IsZero() && u.Protocol == ProtocolAuto {
		wait = min(wait, max(probedAt.Add(u.ProbeInterval).Sub(now), time.Second))
	}
	if due, err := u.Store.NextDue(ctx); err == nil && !due.IsZero() {
		d := due.Sub(now)
		if d <= 0 {
			// Due, yet the round just ended without it: something blocks it (a mode it must
			// wait in). Look again later rather than spin.
			d = u.InitialBackoff
		}
		wait = min(wait, d)
	}
	return max(wait, 10*time.Millisecond)
}

// drain runs rounds under cenkalti/backoff until one completes: exponential waits with
// jitter, Retry-After honoured (clamped to MaxRetryAfter), never giving up
// (WithMaxElapsedTime(0)). Flush and the link's return cut a wait short.
func (u *Uplink) drain(ctx context.Context) error {
	waitCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	bo := &peekBackOff{b: &backoff.ExponentialBackOff{
		InitialInterval:     u.InitialBackoff,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         u.MaxBackoff,
	}}
	u.mu.Lock()
	u.interrupt = cancel
	u.bo = bo
	u.mu.Unlock()
	_, err := backoff.Retry(waitCtx, func() (struct{}, error) {
		u.mu.Lock()
		u.waiting = false
		u.mu.Unlock()
		u.link.setNextTry(time.Time{})
		return struct{}{}, u.round(ctx)
	},
		backoff.WithBackOff(bo),
		backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, d time.Duration) {
			u.noteRoundError(err, d)
			u.link.setNextTry(u.now().Add(d))
			u.mu.Lock()
			u.waiting = true
			u.mu.Unlock()
			u.publish()
		}))
	u.mu.Lock()
	u.waiting = false
	u.interrupt = nil
	u.mu.Unlock()
	return err
}

// noteRoundError logs a failed round: each distinct error once (numbers aside). Exchange
// failures are already logged by the link state; this catches the others (the database).
func (u *Uplink) noteRoundError(err error, wait time.Duration) {
	var he *HTTPError
	if errors.As(err, &he) || errors.Is(err, ErrNotSent) || errors.Is(err, ErrNoResponse) ||
		errors.Is(err, ErrBadResponse) || errors.Is(err, ErrNoLocation) {
		u.Logger.Debug("uplink round failed", "err", err, "retry_in", wait)
		return
	}
	key := errorKey(err.Error())
	u.mu.Lock()
	seen := key == u.lastRoundErr
	u.lastRoundErr = key
	u.mu.Unlock()
	if !seen {
		u.Logger.Warn("uplink round failed", "err", err, "retry_in", wait)
	}
}

// peekBackOff lets a round learn the wait that will follow its failure (to set its deferred
// entries' next attempt) before backoff.Retry asks for it.
type peekBackOff struct {
	b      *backoff.ExponentialBackOff
	peeked time.Duration
	has    bool
}

// NextBackOff returns the peeked interval if a round asked for it, else the next one.
func (p *peekBackOff) NextBackOff() time.Duration {
	if p.has {
		p.has = false
		return p.peeked
	}
	return p.b.NextBackOff()
}

// Reset starts the exponential sequence over.
func (p *peekBackOff) Reset() { p.has = false; p.b.Reset() }

func (p *peekBackOff) peek() time.Duration {
	if !p.has {
		p.peeked, p.has = p.b.NextBackOff(), true
	}
	return p.peeked
}

// retryDelay is the wait after a failure with err: its Retry-After when it has one, else the
// backoff's next interval.
func (u *Uplink) retryDelay(err error) time.Duration {
	var he *HTTPError
	if errors.As(err, &he) && he.RetryAfter > 0 {
		return he.RetryAfter
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.bo == nil {
		return u.InitialBackoff
	}
	return u.bo.peek()
}

// linkErr is a round's failure for backoff.Retry: Retry-After (already clamped) rides along as
// a backoff.RetryAfterError, joined so that the HTTP status stays visible.
func linkErr(err error) error {
	var he *HTTPError
	if errors.As(err, &he) && he.RetryAfter > 0 {
		return errors.Join(err, &backoff.RetryAfterError{Duration: he.RetryAfter})
	}
	return err
}

// round does one pass: probe when due, settle what needs ERP5's results, then claim and send
// until nothing is due. An error means the link or ERP5 failed; the caller backs off.
func (u *Uplink) round(ctx context.Context) error {
	u.mu.Lock()
	paused := u.paused
	u.mu.Unlock()
	if paused {
		return nil
	}
	defer u.afterRound(ctx)
	if u.overBudget() {
		return nil
	}
	mode, err := u.ensureMode(ctx)
	if err != nil {
		return linkErr(err)
	}
	if err := u.verify(ctx, mode); err != nil {
		return linkErr(err)
	}
	start := u.now()
	var sent bool
	if mode == ModeBatch {
		sent, err = u.drainBatches(ctx)
	} else {
		sent, err = u.pipeline(ctx, mode)
	}
	if sent && u.Metrics != nil {
		u.Metrics.RoundTime.Observe(u.now().Sub(start).Seconds())
	}
	return err
}

// pipeline claims and sends batches until nothing is due, keeping up to Pipeline batches in
// flight (receiver mode): the next batch's upload overlaps the previous one's processing and
// answer, so a drain costs about its bytes over the link rather than a round trip per batch
// on top. Batches in flight hold different documents (a claimed entry blocks its document's
// later entries), so per-document order holds. After a failure nothing more is claimed; the
// batches in flight finish and the first error is returned.
func (u *Uplink) pipeline(ctx context.Context, mode string) (bool, error) {
	depth := u.Pipeline
	if depth <= 0 {
		depth = DefaultPipeline
	}
	if mode != ModeBatch {
		depth = 1
	}
	results := make(chan error, depth)
	inflight := 0
	sent := false
	var firstErr error
	claimMore := true
	for {
		if claimMore && firstErr == nil && inflight < depth {
			u.mu.Lock()
			paused := u.paused
			u.mu.Unlock()
			switch {
			case ctx.Err() != nil:
				firstErr = ctx.Err()
			case paused || u.overBudget():
				claimMore = false
			default:
				b, err := u.claim(ctx, mode)
				switch {
				case err != nil:
					firstErr = fmt.Errorf("uplink claim: %w", err)
				case len(b.Entries) == 0:
					// Nothing due now; a batch in flight may free its documents' next entries.
					claimMore = false
				default:
					sent = true
					inflight++
					go func() { results <- u.send(ctx, mode, b) }()
					continue
				}
			}
		}
		if inflight == 0 {
			if firstErr == nil && claimMore {
				continue
			}
			return sent, linkErr(firstErr)
		}
		if err := <-results; err != nil && firstErr == nil {
			firstErr = err
		}
		inflight--
		claimMore = true
	}
}

func (u *Uplink) afterRound(ctx context.Context) {
	counts, err := u.Store.OutboxCounts(context.WithoutCancel(ctx))
	u.mu.Lock()
	u.lastRound = u.now()
	if err == nil {
		u.counts = counts
	}
	u.mu.Unlock()
	if err == nil && u.Metrics != nil {
		for _, s := range outbox.States {
			u.Metrics.Queue.WithLabelValues(s).Set(float64(counts[s]))
		}
	}
	u.publish()
}

// overBudget reports whether today's traffic reached the daily budget.
func (u *Uplink) overBudget() bool {
	if u.DailyBudget <= 0 {
		return false
	}
	r := u.Meter.Reading()
	used := r.UpToday + r.DownToday
	spent := used >= u.DailyBudget
	u.mu.Lock()
	was := u.budgetSpent
	u.budgetSpent = spent
	u.mu.Unlock()
	if u.Metrics != nil {
		u.Metrics.Budget.Set(float64(max(u.DailyBudget-used, 0)))
	}
	if spent && !was {
		u.alarm(Alarm{Kind: AlarmBudget, Message: fmt.Sprintf("today's upstream budget of %d bytes is spent; the uplink waits for the next UTC day", u.DailyBudget)})
	} else if !spent && was {
		u.clearAlarm(AlarmBudget)
	}
	return spent
}

// ensureMode returns the mode to send in, probing the capability when due (protocol auto:
// hourly, after Flush and when the link returns). Only two 404s in a row mean stock ERP5; any
// other failure is retried through the backoff.
func (u *Uplink) ensureMode(ctx context.Context) (string, error) {
	u.mu.Lock()
	mode, probedAt := u.mode, u.probedAt
	u.mu.Unlock()
	if u.Protocol == ProtocolStock {
		return ModeStock, nil
	}
	if mode != ModeUnknown && !probedAt.IsZero() && u.now().Sub(probedAt) < u.ProbeInterval {
		return mode, nil
	}
	capa, err := u.Client.Capability(ctx)
	var he *HTTPError
	switch {
	case err == nil:
		u.mu.Lock()
		u.capa, u.mode, u.probedAt, u.probe404 = capa, ModeBatch, u.now(), 0
		waiting := make([]int64, 0, len(u.needsRecv))
		for seq := range u.needsRecv {
			waiting = append(waiting, seq)
		}
		u.needsRecv = map[int64]bool{}
		u.mu.Unlock()
		if capa.RetentionDays > 0 {
			if err := u.Store.SetMeta(ctx, MetaRetentionDays, strconv.Itoa(capa.RetentionDays)); err != nil {
				return ModeBatch, fmt.Errorf("uplink: record retention: %w", err)
			}
		}
		if mode != ModeBatch {
			u.Logger.Info("erp5 batch receiver found", "version", capa.Version, "encodings", capa.Encodings,
				"max_entries", capa.MaxEntries, "max_batch_bytes", capa.MaxBatchBytes)
		}
		if len(waiting) > 0 {
			// Entries that waited for a receiver are due now.
			if err := u.settle(ctx, verdicts(waiting, outbox.ResultDeferred, "receiver found", u.now())); err != nil {
				return ModeBatch, err
			}
		}
		return ModeBatch, nil
	case errors.As(err, &he) && he.Status == 404 && u.Protocol == ProtocolAuto:
		u.mu.Lock()
		u.probe404++
		n := u.probe404
		if n >= 2 {
			u.mode, u.probedAt, u.capa, u.probe404 = ModeStock, u.now(), nil, 0
		}
		u.mu.Unlock()
		if n >= 2 {
			if mode != ModeStock {
				u.Logger.Warn("no batch receiver at ERP5 (two 404s in a row): stock mode, weaker guarantees (docs/DESIGN.md §7)")
			}
			return ModeStock, nil
		}
		return mode, fmt.Errorf("capability probe: %w", err)
	default:
		// Anything else (no answer, a 5xx during a restart, a garbled body) says nothing
		// about the receiver: the probe is retried through the backoff.
		u.mu.Lock()
		u.probe404 = 0
		u.mu.Unlock()
		return mode, fmt.Errorf("capability probe: %w", err)
	}
}

// verify settles, through the results query, the entries whose outcome must be known before
// anything of them is resent: uncertain ones and unchecked ones of earlier epochs (docs/DESIGN.md §6).
// In stock mode there is no results query: an uncertain stock entry is resent as it is, and
// an entry never sent is checked trivially; batch entries wait for the receiver.
func (u *Uplink) verify(ctx context.Context, mode string) error {
	need, err := u.Store.NeedResults(ctx, 0)
	if err != nil {
		return fmt.Errorf("uplink: %w", err)
	}
	if len(need) == 0 {
		return nil
	}
	type key struct{ epoch, site string }
	groups := map[key][]int64{}
	rows := map[int64]*outbox.Entry{}
	var local []outbox.Result
	for epoch, seqs := range need {
		for _, seq := range seqs {
			e, err := u.Store.OutboxEntry(ctx, seq)
			if err != nil {
				return fmt.Errorf("uplink: %w", err)
			}
			rows[seq] = e
			switch {
			case e.Mode == outbox.ModeStock || (mode == ModeStock && !e.Frozen()):
				// Stock ERP5 keeps no results: resend (an uncertain stock edit is resent; a
				// create whose id was recorded repeats only its edit).
				local = append(local, outbox.Result{Seq: seq, Status: outbox.ResultUnknown, Reason: "stock mode: no results query"})
			case mode != ModeBatch:
				// First sent to the receiver: settled through it once it is back.
			default:
				groups[key{epoch, e.SiteID}] = append(groups[key{epoch, e.SiteID}], seq)
			}
		}
	}
	if len(local) > 0 {
		if err := u.settle(ctx, local); err != nil {
			return err
		}
	}
	keys := make([]key, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return groups[keys[i]][0] < groups[keys[j]][0] })
	for _, k := range keys {
		seqs := groups[k]
		for len(seqs) > 0 {
			n := min(len(seqs), resultsChunk)
			chunk := seqs[:n]
			seqs = seqs[n:]
			res, err := u.Client.Results(ctx, k.site, k.epoch, chunk)
			if err != nil {
				return err
			}
			res = checkStoredHashes(rows, res)
			if err := u.settleResults(ctx, k.site, k.epoch, chunk, res, "results query"); err != nil {
				return err
			}
		}
	}
	return nil
}

// claim takes the next batch for mode.
func (u *Uplink) claim(ctx context.Context, mode string) (*outbox.Batch, error) {
	budget := outbox.Budget{MaxEntries: u.MaxEntries}
	enc := outbox.Encoder(outbox.BatchEncoder)
	switch mode {
	case ModeBatch:
		u.mu.Lock()
		capa, ratio := u.capa, u.ratio
		u.mu.Unlock()
		target := u.BatchBytes
		if capa != nil {
			if capa.MaxEntries > 0 {
				budget.MaxEntries = min(budget.MaxEntries, capa.MaxEntries)
			}
			if capa.MaxBatchBytes > 0 {
				target = min(target, int(capa.MaxBatchBytes))
			}
		}
		budget.MaxEntries, target = u.learnedLimits(budget.MaxEntries, target)
		// The budget counts plain bytes; the target is compressed. Allow 20% for the ratio
		// varying from one batch to the next.
		budget.MaxBytes = int(float64(target) / (max(ratio, 0.05) * 1.2))
	case ModeStock:
		budget.MaxEntries = min(budget.MaxEntries, DefaultStockEntries)
		enc = stockEncoder
	default:
		return &outbox.Batch{}, nil
	}
	return u.Store.Claim(ctx, budget, enc)
}

// stockEncoder fixes the mode of an entry first claimed in stock mode. Its bytes are the
// receiver's JSON (so its hash means the same thing); a stock send renders them as forms. A
// remove or an action cannot go through stock ERP5: it is recorded as a batch entry, so that
// it waits for a receiver and is then sent as any batch entry is.
func stockEncoder(e *outbox.Entry, hash string) (string, []byte, error) {
	_, payload, err := outbox.BatchEncoder(e, hash)
	if e.Op == outbox.OpRemove || e.Op == outbox.OpAction {
		return outbox.ModeBatch, payload, err
	}
	return outbox.ModeStock, payload, err
}

// send sends one claimed batch: its stock entries through the stock interface (an entry is
// always settled in the mode it was first sent in), the others to the receiver; batch entries
// wait as needs_receiver while there is none.
func (u *Uplink) send(ctx context.Context, mode string, b *outbox.Batch) error {
	var stock, batch []*outbox.Entry
	for _, e := range b.Entries {
		if e.Mode == outbox.ModeStock {
			stock = append(stock, e)
		} else {
			batch = append(batch, e)
		}
	}
	if len(batch) > 0 && mode != ModeBatch {
		next := u.now().Add(u.ProbeInterval)
		seqs := make([]int64, len(batch))
		u.mu.Lock()
		for i, e := range batch {
			seqs[i] = e.Seq
			u.needsRecv[e.Seq] = true
		}
		u.mu.Unlock()
		if err := u.settle(ctx, verdicts(seqs, outbox.ResultDeferred, "needs_receiver", next)); err != nil {
			return err
		}
		batch = nil
	}
	var firstErr error
	if len(batch) > 0 {
		firstErr = u.sendBatch(ctx, b.SiteID, b.Epoch, batch)
		if firstErr != nil {
			// The link failed: the stock part waits too (deferred, never sent this time).
			if len(stock) > 0 {
				if err := u.settle(ctx, u.deferAll(stock, firstErr)); err != nil {
					return errors.Join(firstErr, err)
				}
			}
			return firstErr
		}
	}
	return u.sendStockEntries(ctx, stock)
}

// verdicts makes one result per seq.
func verdicts(seqs []int64, status, reason string, next time.Time) []outbox.Result {
	out := make([]outbox.Result, len(seqs))
	for i, s := range seqs {
		out[i] = outbox.Result{Seq: s, Status: status, Reason: reason, NextAttemptAt: next}
	}
	return out
}

// deferAll gives back entries that were claimed but never tried because the link failed:
// their claim is undone (attempts count only requests that left the machine) and they are
// pending again, for the next round after the backoff wait; their last error is kept.
func (u *Uplink) deferAll(entries []*outbox.Entry, _ error) []outbox.Result {
	out := make([]outbox.Result, len(entries))
	for i, e := range entries {
		out[i] = outbox.Result{Seq: e.Seq, Status: outbox.ResultNotSent}
	}
	return out
}

// settle records results, with a context that outlives a cancelled round: an answer that
// arrived must be recorded even while the gateway stops.
func (u *Uplink) settle(ctx context.Context, results []outbox.Result) error {
	if len(results) == 0 {
		return nil
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	settled, err := u.Store.Settle(sctx, results)
	if err != nil {
		return fmt.Errorf("uplink settle: %w", err)
	}
	byState := map[string]int{}
	for _, s := range settled {
		if s.State != "" {
			byState[s.State]++
		}
	}
	for st, n := range byState {
		u.Metrics.entries(st, n)
	}
	u.mu.Lock()
	u.settled += int64(len(settled))
	u.mu.Unlock()
	return nil
}

// sendBatch sends entries (one epoch, one site) to the receiver in chunks: a chunk is at most
// the receiver's size, and smaller for entries that keep failing with 5xx (split in halves
// down to the failing entry, so that one bad entry never holds up other documents). A 4xx
// naming the batch or a 413 splits at once; a single entry is then dead.
func (u *Uplink) sendBatch(ctx context.Context, site, epoch string, entries []*outbox.Entry) error {
	chunks := u.chunks(entries)
	for i, ch := range chunks {
		if err := u.sendChunk(ctx, site, epoch, ch); err != nil {
			var rest []*outbox.Entry
			for _, c := range chunks[i+1:] {
				rest = append(rest, c...)
			}
			if len(rest) > 0 {
				if serr := u.settle(ctx, u.deferAll(rest, err)); serr != nil {
					return errors.Join(err, serr)
				}
			}
			return err
		}
	}
	return nil
}

// chunks splits entries by the caps learned from repeated 5xx answers: the entries never
// suspected go first, together; then the groups of a failing batch, least suspected (largest
// cap) first, so that the entry that keeps failing goes last and a round that stops at its
// failure has sent everything else.
func (u *Uplink) chunks(entries []*outbox.Entry) [][]*outbox.Entry {
	u.mu.Lock()
	defer u.mu.Unlock()
	var normal []*outbox.Entry
	byCap := map[int][]*outbox.Entry{}
	var capsSeen []int
	for _, e := range entries {
		c, ok := u.caps[e.Seq]
		if !ok {
			normal = append(normal, e)
			continue
		}
		if _, seen := byCap[c]; !seen {
			capsSeen = append(capsSeen, c)
		}
		byCap[c] = append(byCap[c], e)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(capsSeen)))
	var out [][]*outbox.Entry
	if len(normal) > 0 {
		out = append(out, normal)
	}
	for _, c := range capsSeen {
		group := byCap[c]
		for len(group) > 0 {
			n := min(c, len(group))
			out = append(out, group[:n])
			group = group[n:]
		}
	}
	return out
}

// sendChunk sends one batch request and settles its entries from the answer.
func (u *Uplink) sendChunk(ctx context.Context, site, epoch string, ch []*outbox.Entry) error {
	u.mu.Lock()
	capa := u.capa
	u.mu.Unlock()
	encoding := EncodingGzip
	if capa != nil {
		encoding = capa.Encoding()
	}
	payloads := make([]json.RawMessage, len(ch))
	plain := 0
	for i, e := range ch {
		payloads[i] = e.Payload
		plain += len(e.Payload)
	}
	// A body over the receiver's limit would be refused with 413: split it first.
	if capa != nil && capa.MaxBatchBytes > 0 && len(ch) > 1 {
		body, _, err := u.Client.codec.encodeBody(encoding, BatchBody(site, epoch, payloads))
		if err == nil && int64(len(body)) > capa.MaxBatchBytes {
			return u.sendHalves(ctx, site, epoch, ch)
		}
	}
	res, size, err := u.Client.SendBatch(ctx, site, epoch, payloads, encoding)
	u.mu.Lock()
	u.sent++
	if err == nil && plain > 0 {
		u.ratio = float64(size) / float64(plain)
	}
	u.mu.Unlock()
	u.Metrics.batch(ModeBatch, size)
	seqs := seqsOf(ch)
	switch Classify(err) {
	case OutcomeOK:
		u.forgetFailures(seqs)
		return u.settleResults(ctx, site, epoch, seqs, res, "")
	case OutcomeTooLarge:
		u.learnTooLarge(len(ch), size)
		if len(ch) > 1 {
			return u.sendHalves(ctx, site, epoch, ch)
		}
		return u.settle(ctx, verdicts(seqs, outbox.ResultRejected, "too large for the receiver: "+shortErr(err), time.Time{}))
	case OutcomeDead:
		var he *HTTPError
		errors.As(err, &he)
		switch {
		case he != nil && he.Status == 404:
			// The receiver is gone (uninstalled, or a front end misroutes): probe again.
			u.mu.Lock()
			u.probedAt = time.Time{}
			u.mu.Unlock()
			return u.deferChunk(ctx, ch, err)
		case he != nil && he.Status == 403:
			u.alarm(Alarm{Kind: AlarmForbidden, Message: "ERP5 refused the batch receiver to this user (403): " + shortErr(err), Seqs: seqs})
			return u.deferChunk(ctx, ch, err)
		case len(ch) > 1:
			// ERP5 refused the batch as a whole: find the entry it refuses.
			return u.sendHalves(ctx, site, epoch, ch)
		}
		return u.settle(ctx, verdicts(seqs, outbox.ResultRejected, shortErr(err), time.Time{}))
	case OutcomeUnauthorized:
		u.alarm(Alarm{Kind: AlarmUnauthorized, Message: "ERP5 refused the gateway's credentials (401): check upstream.auth"})
		return u.deferChunk(ctx, ch, err)
	case OutcomeDeferred:
		var he *HTTPError
		if errors.As(err, &he) && he.Status >= 500 {
			u.noteFailure(seqs)
		}
		return u.deferChunk(ctx, ch, err)
	default: // uncertain
		if err := u.settle(ctx, verdicts(seqs, outbox.ResultUncertain, shortErr(err), time.Time{})); err != nil {
			return err
		}
		return err
	}
}

// sendHalves sends ch as two batches, one after the other.
func (u *Uplink) sendHalves(ctx context.Context, site, epoch string, ch []*outbox.Entry) error {
	half := len(ch) / 2
	if err := u.sendChunk(ctx, site, epoch, ch[:half]); err != nil {
		if serr := u.settle(ctx, u.deferAll(ch[half:], err)); serr != nil {
			return errors.Join(err, serr)
		}
		return err
	}
	return u.sendChunk(ctx, site, epoch, ch[half:])
}

// deferChunk defers a chunk after a transient failure and returns err for the backoff.
func (u *Uplink) deferChunk(ctx context.Context, ch []*outbox.Entry, err error) error {
	next := u.now().Add(u.retryDelay(err))
	if serr := u.settle(ctx, verdicts(seqsOf(ch), outbox.ResultDeferred, shortErr(err), next)); serr != nil {
		return errors.Join(err, serr)
	}
	return err
}

// noteFailure counts a 5xx for each seq; a batch that failed splitAfter times in a row is
// split in halves next time.
func (u *Uplink) noteFailure(seqs []int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	repeated := true
	for _, s := range seqs {
		u.failures[s]++
		if u.failures[s] < splitAfter {
			repeated = false
		}
	}
	if repeated && len(seqs) > 1 {
		for _, s := range seqs {
			u.caps[s] = (len(seqs) + 1) / 2
		}
	}
}

func (u *Uplink) forgetFailures(seqs []int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, s := range seqs {
		delete(u.failures, s)
		delete(u.caps, s)
	}
}

// settleResults settles the seqs of one exchange from the receiver's results: an entry
// without a result is uncertain (it may have been applied); seq_reused holds the entry, pauses
// the uplink and raises an alarm.
func (u *Uplink) settleResults(ctx context.Context, site, epoch string, seqs []int64, res []Result, via string) error {
	bySeq := make(map[int64]Result, len(res))
	for _, r := range res {
		bySeq[r.Seq] = r
	}
	out := make([]outbox.Result, 0, len(seqs))
	var reused []int64
	reusedAt := map[int64]int{}
	for _, s := range seqs {
		r, ok := bySeq[s]
		if !ok {
			out = append(out, outbox.Result{Seq: s, Status: outbox.ResultUncertain, Reason: "ERP5's answer had no result for this entry"})
			continue
		}
		reason := r.Reason
		if r.Message != "" && r.Message != reason {
			reason = strings.TrimPrefix(reason+": "+r.Message, ": ")
		}
		o := outbox.Result{Seq: s, Status: r.Status, ID: r.ID, Version: r.Version, State: r.State,
			Current: r.Current, Reason: reason, Raw: r.Raw}
		switch r.Status {
		case StatusOK, StatusConflict, StatusRejected:
		case StatusUnknown:
			if via == "" {
				// A batch answer cannot say "never applied" for an entry it carried: treat it
				// as no answer, settled by the results query (resending at once could spin).
				o = outbox.Result{Seq: s, Status: outbox.ResultUncertain, Reason: "ERP5's batch answer said unknown"}
			}
		case StatusSeqReused:
			reused = append(reused, s)
			reusedAt[s] = len(out)
		default:
			o = outbox.Result{Seq: s, Status: outbox.ResultUncertain, Reason: "ERP5 answered an unknown status " + strings.TrimSpace(r.Status)}
		}
		out = append(out, o)
	}
	if len(reused) > 0 && via == "" {
		// The entry is held; what ERP5 did under its key comes from the results query and is
		// kept as its answer for the operator.
		if stored, err := u.Client.Results(ctx, site, epoch, reused); err == nil {
			for _, r := range stored {
				if i, ok := reusedAt[r.Seq]; ok && len(r.Raw) > 0 {
					out[i].Raw = json.RawMessage(fmt.Sprintf(`{"status":"seq_reused","erp5_holds":%s}`, r.Raw))
				}
			}
		}
	}
	if err := u.settle(ctx, out); err != nil {
		return err
	}
	u.noteBadVersions(res)
	if len(reused) > 0 {
		msg := fmt.Sprintf("ERP5 holds another payload under epoch %s for seq %s: entries held, uplink paused (a bug or tampering; see `gateway outbox show`)",
			epoch, FormatSeqs(reused))
		if via != "" {
			msg += " [" + via + "]"
		}
		u.mu.Lock()
		u.paused, u.pauseCause = true, "seq_reused"
		u.mu.Unlock()
		u.alarm(Alarm{Kind: AlarmSeqReused, Message: msg, Seqs: reused})
	}
	return nil
}

// sendStock sends one entry through the stock interface: a post is newContent (its id
// recorded before anything else) then Base_edit; a put is Base_edit.
func (u *Uplink) sendStock(ctx context.Context, e *outbox.Entry) error {
	u.mu.Lock()
	u.sent++
	u.mu.Unlock()
	u.Metrics.batch(ModeStock, 0)
	// A claimed entry may come without its fields decoded or its answer (where a create's
	// id is recorded): read it whole.
	full, err := u.Store.OutboxEntry(ctx, e.Seq)
	if err != nil {
		return fmt.Errorf("uplink: %w", err)
	}
	if err := full.Decode(); err != nil {
		return fmt.Errorf("uplink: %w", err)
	}
	e = full
	switch e.Op {
	case outbox.OpPost:
		id := createdID(e)
		created := id == ""
		if id == "" {
			parent := e.ParentID
			if parent == "" {
				parent = gateway.ModuleOf(e.PortalType, u.Modules)
			}
			newID, err := u.Client.Post(ctx, e.PortalType, parent)
			if err != nil {
				return u.stockFailed(ctx, e, err, false)
			}
			if err := u.Store.RecordCreated(context.WithoutCancel(ctx), e.Seq, newID); err != nil {
				// ERP5 created it but the id is not recorded: a retry may create another
				// (stock creates are at-least-once).
				return fmt.Errorf("uplink: record created %s: %w", newID, err)
			}
			id = newID
		}
		if fields := stockFields(e.Fields); len(fields) > 0 {
			if _, err := u.Client.Put(ctx, id, e.PortalType, fields); err != nil {
				return u.stockFailed(ctx, e, err, created)
			}
		}
		return u.settle(ctx, []outbox.Result{{Seq: e.Seq, Status: outbox.ResultOK, ID: id}})
	case outbox.OpPut:
		newID, err := u.Client.Put(ctx, e.DocID, e.PortalType, stockFields(e.Fields))
		if err != nil {
			return u.stockFailed(ctx, e, err, false)
		}
		return u.settle(ctx, []outbox.Result{{Seq: e.Seq, Status: outbox.ResultOK, ID: newID}})
	}
	// remove and action never get here (stockEncoder records them as batch entries).
	return u.settle(ctx, verdicts([]int64{e.Seq}, outbox.ResultDeferred, "needs_receiver", u.now().Add(u.ProbeInterval)))
}

// stockFields is what a stock put sends: the changed fields, without portal_type and
// parent_relative_url (newContent set them).
func stockFields(f map[string]any) map[string]any {
	out := make(map[string]any, len(f))
	for k, v := range f {
		if k != "portal_type" && k != "parent_relative_url" {
			out[k] = v
		}
	}
	return out
}

// createdID returns the id RecordCreated stored in a stock post's answer.
func createdID(e *outbox.Entry) string {
	if len(e.Answer) == 0 {
		return ""
	}
	var a struct {
		Status string `json:"status"`
		ID     string `json:"id"`
	}
	if json.Unmarshal(e.Answer, &a) != nil || a.Status != "created" {
		return ""
	}
	return a.ID
}

func seqsOf(entries []*outbox.Entry) []int64 {
	out := make([]int64, len(entries))
	for i, e := range entries {
		out[i] = e.Seq
	}
	return out
}

// shortErr is an error's message, bounded for last_error.
func shortErr(err error) string {
	if err == nil {
		return ""
	}
	s := strings.ReplaceAll(err.Error(), "\n", "; ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
