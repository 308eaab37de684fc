package wire_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"

	"sitesync.example/gateway/lan/wire"
)

// FuzzPeekID reads the id of a request from the start of its text, as the gateway does with
// the first fragment of a message it refuses: the id it finds is a JSON string or number,
// and the one a whole request carries.
func FuzzPeekID(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":7,"method":"put","params":{"doc":"`,
		`{"id":"a\"b","jsonrpc":"2.0"}`,
		`{"params":{"id":"inner"},"id":3`,
		`{"id":null,"method":"get"}`,
		`{"id":{"x":1}}`,
		`{"id":-0.5e-3}`,
		`[1,2]`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, prefix []byte) {
		id := wire.PeekID(prefix)
		if id == nil {
			return
		}
		var v any
		if err := json.Unmarshal(id, &v); err != nil {
			t.Fatalf("id %q is not JSON", id)
		}
		switch v.(type) {
		case string, float64:
		default:
			t.Fatalf("id %q is not a string or a number", id)
		}
		var whole struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(prefix, &whole) == nil && idMembers(prefix) == 1 && !bytes.Equal(whole.ID, id) {
			t.Fatalf("PeekID %s, the request's id %s", id, whole.ID)
		}
	})
}

// FuzzFragmentRoundTrip splits a message into fragments, delivers them in a random order
// interleaved with another message's, and gets both back whole.
func FuzzFragmentRoundTrip(f *testing.F) {
	f.Add([]byte("hello"), 3, uint64(1))
	f.Add(bytes.Repeat([]byte("x"), wire.MaxFragmentPayload+17), 140000, uint64(2))
	f.Fuzz(func(t *testing.T, msg []byte, otherLen int, seed uint64) {
		if len(msg) == 0 || len(msg) > 256<<10 {
			return
		}
		otherLen = 1 + abs(otherLen)%(200<<10)
		other := bytes.Repeat([]byte{'o'}, otherLen)
		var frames [][]byte
		for i := uint32(0); i < wire.FragmentCount(len(msg)); i++ {
			frames = append(frames, wire.Fragment(7, msg, i))
		}
		for i := uint32(0); i < wire.FragmentCount(len(other)); i++ {
			frames = append(frames, wire.Fragment(8, other, i))
		}
		rng := rand.New(rand.NewPCG(seed, 1))
		rng.Shuffle(len(frames), func(i, j int) { frames[i], frames[j] = frames[j], frames[i] })
		r := wire.Reassembler{MaxMessageSize: 2 << 20, MaxPartial: 2}
		var got [][]byte
		for _, fr := range frames {
			m, err := r.Add(fr)
			if err != nil {
				t.Fatal(err)
			}
			if m != nil {
				got = append(got, m)
			}
		}
		if len(got) != 2 || r.Partial() != 0 {
			t.Fatalf("%d messages back, %d partial", len(got), r.Partial())
		}
		if !(bytes.Equal(got[0], msg) && bytes.Equal(got[1], other) || bytes.Equal(got[1], msg) && bytes.Equal(got[0], other)) {
			t.Fatal("a message came back changed")
		}
	})
}

// idMembers counts the top-level "id" members of a JSON object.
func idMembers(b []byte) int {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0
	}
	n := 0
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return n
		}
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			return n
		}
		if k == "id" {
			n++
		}
	}
	return n
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
