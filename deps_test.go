package gateway_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the domain packages free of I/O dependencies: the root package imports
// the standard library only, and query/ and policy/ never reach databases, HTTP or WebRTC.
func TestImports(t *testing.T) {
	forbidden := []string{"database/sql", "net/http", "github.com/pion/", "modernc.org/", "os/exec"}
	for _, pkg := range []string{".", "./query", "./policy"} {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			path, std, _ := strings.Cut(line, " ")
			if pkg == "." && std != "true" && path != "sitesync.example/gateway" {
				t.Errorf("root package depends on non-standard %s", path)
			}
			for _, f := range forbidden {
				if strings.HasPrefix(path, f) {
					t.Errorf("%s depends on %s", pkg, path)
				}
			}
		}
	}
}
