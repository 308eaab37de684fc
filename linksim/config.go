// Package linksim simulates a slow satellite link in-process: a Link carries net.Conn pairs
// with per-direction token-bucket bandwidth, one-way delay, outages, cuts and byte counters.
//
// A Link is both a dialer (DialContext, usable as http.Transport.DialContext) and a
// net.Listener (for http.Server.Serve). Everything inside uses only time.Sleep, timers,
// channels and sync, never real sockets, so a Link created inside a testing/synctest bubble
// runs in virtual time: a 1 MB transfer at 384 kbit/s and a 700 ms round trip "takes" 21.8 s
// and measures exactly that, in milliseconds of real time.
//
// For smoke tests and benchmarks with real sockets, WrapListener shapes the connections of an
// ordinary TCP listener and Proxy relays 127.0.0.1 connections to a target through a Link.
//
// The model (docs/DESIGN.md appendix C): each direction has a token bucket shared by every
// connection of the link; a write blocks until its bytes have been transmitted (so a writer
// is throttled by bandwidth, not by latency), then each segment arrives at the reader one
// delay later, in order. A dial costs one round trip. While the link is down, new dials fail
// with ErrLinkDown and data stalls (writes block, nothing is delivered) until it is up again.
package linksim

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultSegment is the default number of bytes transmitted as one unit: a TCP segment on
// an Ethernet-sized path. A reader receives data no faster than segment by segment.
const DefaultSegment = 1460

// Config is the shape of a Link. The zero value is an ideal link: unlimited bandwidth, no
// delay.
type Config struct {
	// Up and Down are the bandwidths in bits per second of the client→server (dialer to
	// listener) and server→client directions; 0 means unlimited.
	Up, Down int64
	// Delay is the one-way delay (half the round-trip time), the same in both directions.
	Delay time.Duration
	// Burst is the token bucket's depth in bytes: how much may leave at once after the link
	// has been idle. 0 means none: every byte takes its time on the line, exactly.
	Burst int
	// Segment is the unit of transmission in bytes; 0 means DefaultSegment.
	Segment int
}

// Thuraya is a Thuraya IP link as measured (docs/DESIGN.md appendix C): 384 kbit/s up, 444 kbit/s down and
// a 700 ms round trip.
var Thuraya = Config{Up: 384_000, Down: 444_000, Delay: 350 * time.Millisecond}

// RTT returns the round-trip time, twice Delay.
func (c Config) RTT() time.Duration { return 2 * c.Delay }

// String formats the config in the form ParseConfig reads.
func (c Config) String() string {
	rate := func(r int64) string {
		switch {
		case r == 0:
			return "unlimited"
		case r%1_000_000 == 0:
			return strconv.FormatInt(r/1_000_000, 10) + "mbit"
		case r%1_000 == 0:
			return strconv.FormatInt(r/1_000, 10) + "kbit"
		}
		return strconv.FormatInt(r, 10) + "bit"
	}
	s := rate(c.Up)
	if c.Down != c.Up {
		s += "/" + rate(c.Down)
	}
	return s + "," + c.RTT().String()
}

// ParseConfig reads a link description "RATE[/RATE],RTT": one rate for both directions or
// up/down rates, then the round-trip time. Rates take the units bit, kbit, mbit (decimal,
// as network people write them) or "unlimited"; the RTT is a Go duration. Examples:
// "384kbit,700ms", "384kbit/444kbit,1.1s", "unlimited,0s".
func ParseConfig(s string) (Config, error) {
	rates, rtt, ok := strings.Cut(strings.TrimSpace(s), ",")
	if !ok {
		return Config{}, fmt.Errorf("parse link %q: want RATE[/RATE],RTT", s)
	}
	up, down, two := strings.Cut(rates, "/")
	var c Config
	var err error
	if c.Up, err = parseRate(up); err != nil {
		return Config{}, fmt.Errorf("parse link %q: %w", s, err)
	}
	c.Down = c.Up
	if two {
		if c.Down, err = parseRate(down); err != nil {
			return Config{}, fmt.Errorf("parse link %q: %w", s, err)
		}
	}
	d, err := time.ParseDuration(strings.TrimSpace(rtt))
	if err != nil || d < 0 {
		return Config{}, fmt.Errorf("parse link %q: bad round-trip time %q", s, rtt)
	}
	c.Delay = d / 2
	return c, nil
}

func parseRate(s string) (int64, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "unlimited" || s == "0" {
		return 0, nil
	}
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"mbit", 1_000_000}, {"kbit", 1_000}, {"bit", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("bad rate %q", s)
	}
	return int64(f * float64(mult)), nil
}
