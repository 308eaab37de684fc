package linksim_test

import (
	"io"
	"testing"

	"sitesync.example/gateway/linksim"
)

// BenchmarkLink_Transfer measures the simulation's own cost: 1 MiB through an unlimited,
// delay-free link in memory.
func BenchmarkLink_Transfer(b *testing.B) {
	l := linksim.New(linksim.Config{})
	c, s := l.Pipe()
	defer c.Close()
	defer s.Close()
	buf := make([]byte, 1<<20)
	go io.Copy(io.Discard, s)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}
