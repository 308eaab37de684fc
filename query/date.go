package query

import (
	"slices"
	"time"
)

// Precision is how finely a date is written; dates compare at the coarser of two precisions
// (jIO's jiodate: `2012` equals `2012-05-02 06:07:08`).
type Precision int

// Precisions, coarsest first.
const (
	PrecisionUnknown Precision = iota
	PrecisionYear
	PrecisionMonth
	PrecisionDay
	PrecisionHour
	PrecisionMinute
	PrecisionSecond
	PrecisionMillisecond
)

// String returns jIO's name of the precision ("year" … "millisecond").
func (p Precision) String() string {
	switch p {
	case PrecisionYear:
		return "year"
	case PrecisionMonth:
		return "month"
	case PrecisionDay:
		return "day"
	case PrecisionHour:
		return "hour"
	case PrecisionMinute:
		return "minute"
	case PrecisionSecond:
		return "second"
	case PrecisionMillisecond:
		return "millisecond"
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler.
func (p Precision) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

var months = map[string]time.Month{
	"Jan": time.January, "Feb": time.February, "Mar": time.March, "Apr": time.April,
	"May": time.May, "Jun": time.June, "Jul": time.July, "Aug": time.August,
	"Sep": time.September, "Oct": time.October, "Nov": time.November, "Dec": time.December,
}

// rfcZones are RFC 822's named zones, in hours east of UTC.
var rfcZones = map[string]int{
	"GMT": 0, "UTC": 0, "UT": 0, "Z": 0,
	"EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
}

// ParseDate parses a date written in one of the forms jIO's date keys accept and returns the
// instant (in UTC) it starts at, and its precision.
//
//   - ISO 8601: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, then optionally `T` or a space and `HH`,
//     `HH:mm`, `HH:mm:ss`, `HH:mm:ss.fff` (1 to 9 fraction digits, precision millisecond),
//     each time form optionally followed by `Z`, `±HH`, `±HHmm` or `±HH:mm`.
//   - RFC 822 / RFC 1123, the form ERP5 sends: `Wed, 06 Sep 2017 00:27:13 +0000`, the week
//     day optional, seconds optional (then precision minute), the zone `±hhmm`, GMT, UT, UTC, Z
//     or a North American zone (EST … PDT).
//
// A date without a zone is taken as UTC (jIO takes the browser's zone; the gateway has no
// browser). Out-of-range fields (month 13, 30 February, 24:00, second 60) are rejected.
func ParseDate(s string) (t time.Time, prec Precision, ok bool) {
	if t, p, ok := parseISO(s); ok {
		return t, p, true
	}
	if t, p, ok := parseRFC822(s); ok {
		return t, p, true
	}
	return time.Time{}, PrecisionUnknown, false
}

// scanner reads a date left to right; any mismatch clears ok.
type scanner struct {
	s  string
	i  int
	ok bool
}

func (c *scanner) done() bool { return c.i == len(c.s) }

// peek returns the next byte, 0 at the end.
func (c *scanner) peek() byte {
	if c.i < len(c.s) {
		return c.s[c.i]
	}
	return 0
}

// digits reads exactly n ASCII digits.
func (c *scanner) digits(n int) int {
	if !c.ok || c.i+n > len(c.s) {
		c.ok = false
		return 0
	}
	v := 0
	for _, b := range []byte(c.s[c.i : c.i+n]) {
		if b < '0' || b > '9' {
			c.ok = false
			return 0
		}
		v = v*10 + int(b-'0')
	}
	c.i += n
	return v
}

// byte1 reads b if it is next.
func (c *scanner) byte1(b byte) bool {
	if c.ok && c.peek() == b {
		c.i++
		return true
	}
	return false
}

// spaces reads at least min of RE2's \s ([\t\n\f\r ]).
func (c *scanner) spaces(min int) {
	n := 0
	for c.i < len(c.s) {
		switch c.s[c.i] {
		case ' ', '\t', '\n', '\f', '\r':
			c.i++
			n++
			continue
		}
		break
	}
	if n < min {
		c.ok = false
	}
}

// offset reads ±HH, ±HHmm or (colon true) ±HH:mm and returns seconds east of UTC.
func (c *scanner) offset(colon bool) int {
	sign := 1
	switch c.peek() {
	case '+':
	case '-':
		sign = -1
	default:
		c.ok = false
		return 0
	}
	c.i++
	h, m := c.digits(2), 0
	if colon && c.byte1(':') {
		m = c.digits(2)
	} else if !c.done() {
		m = c.digits(2)
	}
	if h > 23 || m > 59 {
		c.ok = false
	}
	return sign * (h*3600 + m*60)
}

// parseISO reads YYYY[-MM[-DD[(T| )HH[:mm[:ss[(.|,)f{1,9}]]][Z|±HH[[:]mm]]]]].
func parseISO(s string) (time.Time, Precision, bool) {
	c := &scanner{s: s, ok: true}
	year, month, day := c.digits(4), 1, 1
	hour, minute, sec, nsec, offset := 0, 0, 0, 0, 0
	prec := PrecisionYear
	if c.byte1('-') {
		month, prec = c.digits(2), PrecisionMonth
		if c.byte1('-') {
			day, prec = c.digits(2), PrecisionDay
			if c.byte1('T') || c.byte1(' ') {
				hour, prec = c.digits(2), PrecisionHour
				if c.byte1(':') {
					minute, prec = c.digits(2), PrecisionMinute
					if c.byte1(':') {
						sec, prec = c.digits(2), PrecisionSecond
						if c.byte1('.') || c.byte1(',') {
							start := c.i
							for c.i < len(s) && c.i-start < 9 && s[c.i] >= '0' && s[c.i] <= '9' {
								nsec = nsec*10 + int(s[c.i]-'0')
								c.i++
							}
							n := c.i - start
							if n == 0 {
								c.ok = false
							}
							for ; n < 9; n++ {
								nsec *= 10
							}
							prec = PrecisionMillisecond
						}
					}
				}
				if !c.byte1('Z') && !c.done() {
					offset = c.offset(true)
				}
			}
		}
	}
	if !c.ok || !c.done() {
		return time.Time{}, PrecisionUnknown, false
	}
	return build(year, month, day, hour, minute, sec, nsec, offset, prec)
}

var weekdays = [...]string{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}

// parseRFC822 reads [Www,] D[D] Mon YYYY HH:MM[:SS] ZONE, with RE2 \s runs between fields.
func parseRFC822(s string) (time.Time, Precision, bool) {
	c := &scanner{s: s, ok: true}
	if len(s) >= 4 && s[3] == ',' && slices.Contains(weekdays[:], s[:3]) {
		c.i = 4
		c.spaces(0)
	}
	var day int
	if c.i+1 < len(s) && s[c.i+1] >= '0' && s[c.i+1] <= '9' {
		day = c.digits(2)
	} else {
		day = c.digits(1)
	}
	c.spaces(1)
	if !c.ok || c.i+3 > len(s) {
		return time.Time{}, PrecisionUnknown, false
	}
	month, ok := months[s[c.i:c.i+3]]
	if !ok {
		return time.Time{}, PrecisionUnknown, false
	}
	c.i += 3
	c.spaces(1)
	year := c.digits(4)
	c.spaces(1)
	hour := c.digits(2)
	if !c.byte1(':') {
		c.ok = false
	}
	minute, sec := c.digits(2), 0
	prec := PrecisionMinute
	if c.byte1(':') {
		sec, prec = c.digits(2), PrecisionSecond
	}
	c.spaces(1)
	if !c.ok {
		return time.Time{}, PrecisionUnknown, false
	}
	var offset int
	if h, ok := rfcZones[s[c.i:]]; ok {
		offset = h * 3600
	} else {
		if len(s)-c.i != 5 {
			return time.Time{}, PrecisionUnknown, false
		}
		offset = c.offset(false)
	}
	if !c.ok {
		return time.Time{}, PrecisionUnknown, false
	}
	return build(year, int(month), day, hour, minute, sec, 0, offset, prec)
}

func build(year, month, day, hour, minute, sec, nsec, offset int, prec Precision) (time.Time, Precision, bool) {
	if month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, PrecisionUnknown, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.FixedZone("", offset))
	if t.Day() != day { // 30 February normalised into March
		return time.Time{}, PrecisionUnknown, false
	}
	return t.UTC(), prec, true
}

// truncate returns t (in UTC) cut down to the start of its unit at precision p.
func truncate(t time.Time, p Precision) time.Time {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	switch p {
	case PrecisionYear:
		return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
	case PrecisionMonth:
		return time.Date(y, mo, 1, 0, 0, 0, 0, time.UTC)
	case PrecisionDay:
		return time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
	case PrecisionHour:
		return time.Date(y, mo, d, h, 0, 0, 0, time.UTC)
	case PrecisionMinute:
		return time.Date(y, mo, d, h, mi, 0, 0, time.UTC)
	case PrecisionSecond:
		return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
	}
	return t.Truncate(time.Millisecond)
}

// CompareDates compares two dates written in the forms ParseDate accepts, at the coarser of
// their two precisions (in UTC): -1 when a is before b, 0 when they fall in the same year,
// month, day… and +1 when a is after. ok is false when either does not parse.
func CompareDates(a, b string) (int, bool) {
	ta, pa, ok := ParseDate(a)
	if !ok {
		return 0, false
	}
	tb, pb, ok := ParseDate(b)
	if !ok {
		return 0, false
	}
	p := min(pa, pb)
	return truncate(ta, p).Compare(truncate(tb, p)), true
}
