package outbox_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"sitesync.example/gateway/outbox"
	"sitesync.example/gateway/sqlite"
)

// "keys" is part of the canonical JSON, in its sorted place after "key"; an entry without
// folded keys encodes as before.
func TestCanonical_Keys(t *testing.T) {
	e := &outbox.Entry{Seq: 9, Op: outbox.OpPut, DocID: "m/1", Fields: obj(t, `{"t":"x"}`), Base: obj(t, `{"t":"w"}`),
		Peer: "p2", Key: "k9", Covers: []int64{7, 8},
		Keys: []outbox.WriteKey{{Peer: "p1", Key: "k7"}, {Peer: "p2", Key: "k8"}}}
	got, err := outbox.Canonical(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"base":{"t":"w"},"covers":[7,8],"fields":{"t":"x"},"id":"m/1","key":"k9","keys":[{"key":"k7","peer":"p1"},{"key":"k8","peer":"p2"}],"op":"put","peer":"p2","seq":9}`
	if string(got) != want {
		t.Errorf("canonical\n got %s\nwant %s", got, want)
	}
	wire, _ := json.Marshal(outbox.Wire(e))
	if !bytes.Equal(wire, got) {
		t.Errorf("Wire and Canonical disagree:\n%s\n%s", wire, got)
	}
}

// A merged entry carries the (peer, key) of every folded write that had a key, transitively:
// also those folded into an entry that was merged earlier and left unsent.
func TestClaim_MergedEntryCarriesFoldedKeys(t *testing.T) {
	e := newEnv(t)
	e.seed("person_module/a", `{"portal_type":"Person","title":"a"}`)
	e.seed("person_module/b", `{"portal_type":"Person","title":"b"}`)
	write := func(w sqlite.Write) int64 {
		t.Helper()
		r, err := e.db.Write(e.ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		return r.Seq
	}
	sa := write(sqlite.Write{Op: "put", ID: "person_module/a", Body: json.RawMessage(`{"title":"a1"}`), Peer: "p1", Key: "ka"})
	s1 := write(sqlite.Write{Op: "put", ID: "person_module/b", Body: json.RawMessage(`{"title":"b1"}`), Peer: "p1", Key: "k1"})
	s2 := write(sqlite.Write{Op: "put", ID: "person_module/b", Body: json.RawMessage(`{"title":"b2"}`)})
	s3 := write(sqlite.Write{Op: "put", ID: "person_module/b", Body: json.RawMessage(`{"title":"b3"}`), Peer: "p2", Key: "k3"})
	// The first document's entry alone fits: b's run is folded into s3 and left.
	b := e.claim(outbox.Budget{MaxBytes: 150})
	if len(b.Entries) != 1 || b.Entries[0].Seq != sa {
		t.Fatalf("claimed %v, want [%d]", seqs(b), sa)
	}
	if b.Entries[0].Keys != nil || bytes.Contains(b.Entries[0].Payload, []byte(`"keys"`)) {
		t.Errorf("an unmerged entry carries keys: %s", b.Entries[0].Payload)
	}
	s4 := write(sqlite.Write{Op: "put", ID: "person_module/b", Body: json.RawMessage(`{"title":"b4"}`), Peer: "p1", Key: "k4"})
	b = e.claim(outbox.Budget{})
	if len(b.Entries) != 1 || b.Entries[0].Seq != s4 {
		t.Fatalf("claimed %v, want [%d]", seqs(b), s4)
	}
	m := b.Entries[0]
	if want := []int64{s1, s2, s3}; !reflect.DeepEqual(m.Covers, want) {
		t.Fatalf("covers %v, want %v", m.Covers, want)
	}
	want := []outbox.WriteKey{{Peer: "p1", Key: "k1"}, {Peer: "p2", Key: "k3"}}
	if !reflect.DeepEqual(m.Keys, want) {
		t.Errorf("keys %+v, want %+v", m.Keys, want)
	}
	if !bytes.Contains(m.Payload, []byte(`"key":"k4","keys":[{"key":"k1","peer":"p1"},{"key":"k3","peer":"p2"}]`)) {
		t.Errorf("payload %s lacks the folded keys", m.Payload)
	}
	canon := bytes.Replace(m.Payload, []byte(`"hash":"`+m.Hash+`",`), nil, 1)
	if outbox.Hash(canon) != m.Hash {
		t.Errorf("the hash does not cover the payload with its keys")
	}
	// Stored bytes are resent as they are.
	if got := e.entry(s4); !bytes.Equal(got.Payload, m.Payload) {
		t.Errorf("stored payload %s, claimed %s", got.Payload, m.Payload)
	}
}
