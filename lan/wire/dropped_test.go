package wire_test

import (
	"errors"
	"testing"

	"sitesync.example/gateway/lan/wire"
)

// TestReassembler_DroppedMessageLeavesNoState checks that the fragments still on the way for
// a refused message neither start a new partial message (which would never complete and
// would hold a MaxPartial slot for good) nor provoke a second error.
func TestReassembler_DroppedMessageLeavesNoState(t *testing.T) {
	r := wire.Reassembler{MaxMessageSize: 100, MaxPartial: 2}
	frame := func(num, index, count uint32, payload string) []byte {
		return wire.AppendFragment(nil, wire.FragmentHeader{Message: num, Index: index, Count: count}, []byte(payload))
	}
	for num := uint32(1); num <= 10; num++ {
		// Refused for a contradicting count, then too large, then too many at once.
		if _, err := r.Add(frame(num, 0, 3, "a")); err != nil {
			t.Fatalf("message %d: first fragment: %v", num, err)
		}
		var err error
		switch num % 2 {
		case 0:
			_, err = r.Add(frame(num, 1, 4, "b"))
		case 1:
			_, err = r.Add(frame(num, 1, 3, string(make([]byte, 100))))
		}
		if !errors.Is(err, wire.ErrBadFragment) && !errors.Is(err, wire.ErrMessageTooLarge) {
			t.Fatalf("message %d: refusal: %v", num, err)
		}
		if msg, err := r.Add(frame(num, 2, 3, "c")); msg != nil || err != nil {
			t.Fatalf("message %d: the rest of a refused message: %q, %v", num, msg, err)
		}
		if r.Partial() != 0 {
			t.Fatalf("message %d: %d partial messages left", num, r.Partial())
		}
	}
	// A message refused for being one too many leaves nothing either.
	r.Add(frame(100, 0, 2, "x"))
	r.Add(frame(101, 0, 2, "y"))
	if _, err := r.Add(frame(102, 0, 2, "z")); !errors.Is(err, wire.ErrBadFragment) {
		t.Fatalf("third partial message: %v", err)
	}
	if msg, err := r.Add(frame(102, 1, 2, "z")); msg != nil || err != nil || r.Partial() != 2 {
		t.Fatalf("the rest of the refused third: %q, %v, %d partial", msg, err, r.Partial())
	}
	for num, want := range map[uint32]string{100: "x1", 101: "y1"} {
		if msg, err := r.Add(frame(num, 1, 2, "1")); err != nil || string(msg) != want {
			t.Fatalf("message %d: %q, %v", num, msg, err)
		}
	}
	// Malformed headers are still reported, even for a dropped message's number.
	if _, err := r.Add(frame(2, 5, 3, "x")); !errors.Is(err, wire.ErrBadFragment) {
		t.Fatalf("index past count of a dropped message: %v", err)
	}
}
