package query_test

import (
	"testing"
	"time"

	"sitesync.example/gateway/query"
)

func TestParseDate(t *testing.T) {
	utc := func(y int, mo time.Month, d, h, mi, s, ns int) time.Time {
		return time.Date(y, mo, d, h, mi, s, ns, time.UTC)
	}
	tests := []struct {
		in   string
		want time.Time
		prec query.Precision
		ok   bool
	}{
		{"2012", utc(2012, 1, 1, 0, 0, 0, 0), query.PrecisionYear, true},
		{"2012-05", utc(2012, 5, 1, 0, 0, 0, 0), query.PrecisionMonth, true},
		{"2012-05-02", utc(2012, 5, 2, 0, 0, 0, 0), query.PrecisionDay, true},
		{"2012-05-02 06", utc(2012, 5, 2, 6, 0, 0, 0), query.PrecisionHour, true},
		{"2012-05-02T06", utc(2012, 5, 2, 6, 0, 0, 0), query.PrecisionHour, true},
		{"2012-05-02 06:07", utc(2012, 5, 2, 6, 7, 0, 0), query.PrecisionMinute, true},
		{"2012-05-02 06:07:08", utc(2012, 5, 2, 6, 7, 8, 0), query.PrecisionSecond, true},
		{"2012-05-02T06:07:08Z", utc(2012, 5, 2, 6, 7, 8, 0), query.PrecisionSecond, true},
		{"2012-05-02T06:07:08.123", utc(2012, 5, 2, 6, 7, 8, 123e6), query.PrecisionMillisecond, true},
		{"2012-05-02 06:07:08.5", utc(2012, 5, 2, 6, 7, 8, 500e6), query.PrecisionMillisecond, true},
		{"2012-05-02T06:07:08.123456+02:00", utc(2012, 5, 2, 4, 7, 8, 123456e3), query.PrecisionMillisecond, true},
		{"2012-05-02T06:07+0230", utc(2012, 5, 2, 3, 37, 0, 0), query.PrecisionMinute, true},
		{"2012-05-02T23:00-05", utc(2012, 5, 3, 4, 0, 0, 0), query.PrecisionMinute, true},
		{"Wed, 06 Sep 2017 00:27:13 +0000", utc(2017, 9, 6, 0, 27, 13, 0), query.PrecisionSecond, true},
		{"06 Sep 2017 00:27:13 GMT", utc(2017, 9, 6, 0, 27, 13, 0), query.PrecisionSecond, true},
		{"Wed, 6 Sep 2017 00:27 -0130", utc(2017, 9, 6, 1, 57, 0, 0), query.PrecisionMinute, true},
		{"Tue, 05 Sep 2017 20:27:13 EDT", utc(2017, 9, 6, 0, 27, 13, 0), query.PrecisionSecond, true},
		{"2012-02-29", utc(2012, 2, 29, 0, 0, 0, 0), query.PrecisionDay, true},
		{"2011-02-29", time.Time{}, query.PrecisionUnknown, false},
		{"2012-13", time.Time{}, query.PrecisionUnknown, false},
		{"2012-00-10", time.Time{}, query.PrecisionUnknown, false},
		{"2012-05-02 24:00", time.Time{}, query.PrecisionUnknown, false},
		{"2012-05-02 23:60", time.Time{}, query.PrecisionUnknown, false},
		{"2012-05-02 23:59:60", time.Time{}, query.PrecisionUnknown, false},
		{"2012-05-02Z", time.Time{}, query.PrecisionUnknown, false},
		{"2012-05-02T06:07+25:00", time.Time{}, query.PrecisionUnknown, false},
		{"12", time.Time{}, query.PrecisionUnknown, false},
		{"x2012", time.Time{}, query.PrecisionUnknown, false},
		{"2012 ", time.Time{}, query.PrecisionUnknown, false},
		{"Wed, 06 Foo 2017 00:27:13 +0000", time.Time{}, query.PrecisionUnknown, false},
		{"Wed, 06 Sep 2017 00:27:13", time.Time{}, query.PrecisionUnknown, false},
		{"", time.Time{}, query.PrecisionUnknown, false},
		{"2012-05-02T", time.Time{}, query.PrecisionUnknown, false},
		{"2012-05-02T06:07:08.", time.Time{}, query.PrecisionUnknown, false},
		{"2012-05-02T06:07:08.1234567890", time.Time{}, query.PrecisionUnknown, false},
		{"2012-05-02T06:07:08.123456789Z", utc(2012, 5, 2, 6, 7, 8, 123456789), query.PrecisionMillisecond, true},
		{"2012-05-02T06:07:08+02:0", time.Time{}, query.PrecisionUnknown, false},
		{"2012-5-02", time.Time{}, query.PrecisionUnknown, false},
		{"Wed,06 Sep 2017 00:27:13 +0000", utc(2017, 9, 6, 0, 27, 13, 0), query.PrecisionSecond, true},
		{"Wed, 06 Sep 2017 00:27:13 +000", time.Time{}, query.PrecisionUnknown, false},
		{"Wed, 06 Sep 2017 0027 +0000", time.Time{}, query.PrecisionUnknown, false},
		{"Wed, 31 Feb 2017 00:27:13 +0000", time.Time{}, query.PrecisionUnknown, false},
		{"Xyz, 06 Sep 2017 00:27:13 +0000", time.Time{}, query.PrecisionUnknown, false},
	}
	for _, tt := range tests {
		got, prec, ok := query.ParseDate(tt.in)
		if ok != tt.ok || prec != tt.prec || !got.Equal(tt.want) {
			t.Errorf("ParseDate(%q) = %v, %v, %v; want %v, %v, %v", tt.in, got, prec, ok, tt.want, tt.prec, tt.ok)
		}
		if ok && got.Location() != time.UTC {
			t.Errorf("ParseDate(%q) location %v, want UTC", tt.in, got.Location())
		}
	}
}

func TestCompareDates(t *testing.T) {
	tests := []struct {
		a, b string
		want int
		ok   bool
	}{
		{"2012", "2012-05-02 06:07:08", 0, true},
		{"2012-05-02 06:07:08", "2012", 0, true},
		{"2012-05", "2012-05-31T23:59:59Z", 0, true},
		{"2012-05", "2012-06-01", -1, true},
		{"2013", "2012-12-31 23:59:59", 1, true},
		{"2012-05-02 06:07:08.001", "2012-05-02 06:07:08.002", -1, true},
		{"2012-05-02 06:07:08.001", "2012-05-02 06:07:08", 0, true},
		{"Wed, 06 Sep 2017 00:27:13 +0000", "2017-09-06T00:27:13Z", 0, true},
		{"Wed, 06 Sep 2017 00:27:13 +0000", "2017-09-06T00:27:14Z", -1, true},
		{"Wed, 06 Sep 2017 00:27:13 +0100", "2017-09-06", -1, true}, // 23:27 on the 5th in UTC
		{"2012", "soon", 0, false},
		{"soon", "2012", 0, false},
	}
	for _, tt := range tests {
		got, ok := query.CompareDates(tt.a, tt.b)
		if got != tt.want || ok != tt.ok {
			t.Errorf("CompareDates(%q, %q) = %d, %v; want %d, %v", tt.a, tt.b, got, ok, tt.want, tt.ok)
		}
	}
}

func TestPrecision_String(t *testing.T) {
	names := map[query.Precision]string{
		query.PrecisionUnknown: "unknown", query.PrecisionYear: "year", query.PrecisionMonth: "month",
		query.PrecisionDay: "day", query.PrecisionHour: "hour", query.PrecisionMinute: "minute",
		query.PrecisionSecond: "second", query.PrecisionMillisecond: "millisecond",
	}
	for p, want := range names {
		if got := p.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(p), got, want)
		}
		b, _ := p.MarshalText()
		if string(b) != want {
			t.Errorf("%d.MarshalText() = %q, want %q", int(p), b, want)
		}
	}
}

// FuzzParseDate checks ParseDate never panics, returns UTC instants with a known precision,
// and that CompareDates of a date with itself is 0.
func FuzzParseDate(f *testing.F) {
	for _, s := range []string{"2012", "2012-05-02T06:07:08.123+02:00", "Wed, 06 Sep 2017 00:27:13 +0000",
		"6 Sep 2017 00:27 EDT", "2012-05-02 06:07:08,5Z", "2012-02-30", "Mon,06 Sep 2017 00:27:13 -2359"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, p, ok := query.ParseDate(s)
		if !ok {
			if p != query.PrecisionUnknown || !d.IsZero() {
				t.Fatalf("ParseDate(%q) failed but returned %v, %v", s, d, p)
			}
			return
		}
		if d.Location() != time.UTC || p < query.PrecisionYear || p > query.PrecisionMillisecond {
			t.Fatalf("ParseDate(%q) = %v, %v", s, d, p)
		}
		if c, ok := query.CompareDates(s, s); !ok || c != 0 {
			t.Fatalf("CompareDates(%q, itself) = %d, %v", s, c, ok)
		}
	})
}
