package wire_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"sitesync.example/gateway/lan/wire"
)

// fragments splits msg into its fragments.
func fragments(num uint32, msg []byte) [][]byte {
	var out [][]byte
	for i := uint32(0); i < wire.FragmentCount(len(msg)); i++ {
		out = append(out, wire.Fragment(num, msg, i))
	}
	return out
}

func TestFragment_Header(t *testing.T) {
	msg := bytes.Repeat([]byte("a"), wire.MaxFragmentPayload+1)
	fs := fragments(7, msg)
	if len(fs) != 2 {
		t.Fatalf("%d fragments, want 2", len(fs))
	}
	want := []byte{0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2}
	if !bytes.Equal(fs[1][:12], want) || len(fs[1]) != 13 || len(fs[0]) != 12+wire.MaxFragmentPayload {
		t.Errorf("second fragment header % x, length %d", fs[1][:12], len(fs[1]))
	}
}

func TestReassembler_Interleaved(t *testing.T) {
	r := wire.Reassembler{MaxMessageSize: 1 << 20, MaxPartial: 4}
	a := []byte(strings.Repeat("A", 200<<10))
	b := []byte(strings.Repeat("b", 70<<10))
	fa, fb := fragments(1, a), fragments(2, b)
	// Interleave, and deliver b's fragments in reverse order.
	order := [][]byte{fa[0], fb[1], fa[1], fb[0], fa[2], fa[3]}
	var got [][]byte
	for _, f := range order {
		msg, err := r.Add(f)
		if err != nil {
			t.Fatal(err)
		}
		if msg != nil {
			got = append(got, msg)
		}
	}
	if len(got) != 2 || !bytes.Equal(got[0], b) || !bytes.Equal(got[1], a) {
		t.Fatalf("reassembled %d messages", len(got))
	}
	if r.Partial() != 0 {
		t.Errorf("%d partial messages left", r.Partial())
	}
}

func TestReassembler_Errors(t *testing.T) {
	frag := func(num, idx, count uint32, n int) []byte {
		return wire.AppendFragment(nil, wire.FragmentHeader{Message: num, Index: idx, Count: count}, bytes.Repeat([]byte("x"), n))
	}
	tests := []struct {
		name   string
		frames [][]byte
		want   error
	}{
		{"Short", [][]byte{{1, 2, 3}}, wire.ErrBadFragment},
		{"ZeroCount", [][]byte{frag(1, 0, 0, 1)}, wire.ErrBadFragment},
		{"IndexPastCount", [][]byte{frag(1, 3, 3, 1)}, wire.ErrBadFragment},
		{"Empty", [][]byte{frag(1, 0, 2, 0)}, wire.ErrBadFragment},
		{"Oversize", [][]byte{frag(1, 0, 2, wire.MaxFragmentPayload+1)}, wire.ErrBadFragment},
		{"CountChanges", [][]byte{frag(1, 0, 3, 1), frag(1, 1, 4, 1)}, wire.ErrBadFragment},
		{"Duplicate", [][]byte{frag(1, 0, 3, 1), frag(1, 0, 3, 1)}, wire.ErrBadFragment},
		{"TooManyPartial", [][]byte{frag(1, 0, 2, 1), frag(2, 0, 2, 1), frag(3, 0, 2, 1)}, wire.ErrBadFragment},
		{"TooLarge", [][]byte{frag(1, 0, 3, 60<<10), frag(1, 1, 3, 60<<10)}, wire.ErrMessageTooLarge},
		{"CountTooLarge", [][]byte{frag(1, 0, 1<<30, 1)}, wire.ErrMessageTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := wire.Reassembler{MaxMessageSize: 100 << 10, MaxPartial: 2}
			var err error
			for _, f := range tc.frames {
				if _, err = r.Add(f); err != nil {
					break
				}
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			var fe *wire.FragmentError
			if !errors.As(err, &fe) {
				t.Fatalf("%T is not a *FragmentError", err)
			}
			// The refused message is forgotten; a good one still goes through.
			if tc.name != "TooManyPartial" && r.Partial() != 0 {
				t.Errorf("%d partial messages kept after the error", r.Partial())
			}
			msg, err := r.Add(frag(9, 0, 1, 5))
			if err != nil || string(msg) != "xxxxx" {
				t.Errorf("after the error: %q %v", msg, err)
			}
		})
	}
}

func TestFragmentError_KeepsFirstFragment(t *testing.T) {
	r := wire.Reassembler{MaxMessageSize: 100 << 10, MaxPartial: 2}
	msg := []byte(`{"jsonrpc":"2.0","id":42,"method":"put","params":{"doc":{"t":"` + strings.Repeat("x", 150<<10) + `"}}}`)
	var err error
	for _, f := range fragments(3, msg) {
		if _, err = r.Add(f); err != nil {
			break
		}
	}
	var fe *wire.FragmentError
	if !errors.As(err, &fe) || fe.First == nil {
		t.Fatalf("error %v keeps no first fragment", err)
	}
	if id := wire.PeekID(fe.First); string(id) != "42" {
		t.Errorf("PeekID = %s, want 42", id)
	}
}

func TestPeekID(t *testing.T) {
	for prefix, want := range map[string]string{
		`{"jsonrpc":"2.0","id":7,"method":"get","params":{"id":"x`: "7",
		`{"id":"a\"b","params":{`:                                  `"a\"b"`,
		` { "jsonrpc" : "2.0" , "id" : -1.5e3 `:                    "-1.5e3",
		`{"params":{"id":"inner"},"id":3`:                          "3",
		`{"jsonrpc":"2.0","params":{"doc":"trunc`:                  "",
		`{"id":{"x":1}}`:                                           "",
		`{"id":null,`:                                              "",
		`[1,2]`:                                                    "",
		`not json`:                                                 "",
	} {
		if got := string(wire.PeekID([]byte(prefix))); got != want {
			t.Errorf("PeekID(%s) = %q, want %q", prefix, got, want)
		}
	}
}

func FuzzReassembler(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 'a'}, []byte{0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 'b'})
	f.Add([]byte{0, 0, 0, 1}, []byte{})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		r := wire.Reassembler{MaxMessageSize: 1 << 10, MaxPartial: 2}
		for _, frame := range [][]byte{a, b, a} {
			msg, err := r.Add(frame)
			if err == nil && len(msg) > 1<<10 {
				t.Fatalf("message of %d bytes over the limit", len(msg))
			}
		}
		if r.Partial() > 2 {
			t.Fatalf("%d partial messages", r.Partial())
		}
	})
}

func TestReassembler_RandomSplits(t *testing.T) {
	// Messages of random sizes, fragments shuffled across messages: each comes back whole.
	rng := rand.New(rand.NewPCG(1, 2))
	r := wire.Reassembler{MaxMessageSize: 4 << 20, MaxPartial: 8}
	msgs := map[uint32][]byte{}
	var frames [][]byte
	for num := uint32(0); num < 8; num++ {
		m := make([]byte, 1+rng.IntN(400<<10))
		for i := range m {
			m[i] = byte('a' + rng.IntN(26))
		}
		msgs[num] = m
		frames = append(frames, fragments(num, m)...)
	}
	rng.Shuffle(len(frames), func(i, j int) { frames[i], frames[j] = frames[j], frames[i] })
	done := 0
	for _, f := range frames {
		msg, err := r.Add(f)
		if err != nil {
			t.Fatal(err)
		}
		if msg == nil {
			continue
		}
		found := false
		for num, m := range msgs {
			if bytes.Equal(m, msg) {
				delete(msgs, num)
				found = true
			}
		}
		if !found {
			t.Fatal("a reassembled message matches none sent")
		}
		done++
	}
	if done != 8 || len(msgs) != 0 {
		t.Errorf("%d messages reassembled, %d missing", done, len(msgs))
	}
}
