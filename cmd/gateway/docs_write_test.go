package main

import (
	"strings"
	"testing"
)

func TestDocsWrite_AsRole(t *testing.T) {
	t.Chdir(t.TempDir())
	dir := t.TempDir()
	// As the operator, roles and schemas do not apply.
	out, errOut, code := runDocs(t, "", "--data-dir", dir, "docs", "post", `{"portal_type":"Person","title":"Op","reference":"R-1"}`)
	if code != 0 || !strings.Contains(out, `"id":"person_module/local-`) {
		t.Fatalf("operator post: exit %d: %s %s", code, out, errOut)
	}
	// As a clerk, reference is not writable and a Person needs a title.
	_, errOut, code = runDocs(t, "", "--data-dir", dir, "docs", "post", "--as-role", "clerk", `{"portal_type":"Person","title":"C","reference":"R-2"}`)
	if code != 1 || !strings.Contains(errOut, "reference") {
		t.Errorf("clerk post with reference: exit %d: %s", code, errOut)
	}
	_, errOut, code = runDocs(t, "", "--data-dir", dir, "docs", "post", "--as-role", "clerk", `{"portal_type":"Person","first_name":"No Title"}`)
	if code != 1 || !strings.Contains(errOut, "title") {
		t.Errorf("clerk post without title: exit %d: %s", code, errOut)
	}
	out, errOut, code = runDocs(t, "", "--data-dir", dir, "docs", "post", "--as-role", "clerk", `{"portal_type":"Person","title":"Fine"}`)
	if code != 0 {
		t.Errorf("clerk post: exit %d: %s %s", code, out, errOut)
	}
	_, errOut, code = runDocs(t, "", "--data-dir", dir, "docs", "post", "--as-role", "nobody", `{"portal_type":"Person","title":"x"}`)
	if code != 2 || !strings.Contains(errOut, "nobody") {
		t.Errorf("unknown role: exit %d: %s", code, errOut)
	}
	// Only the two allowed posts were queued.
	out, _, _ = runDocs(t, "", "--data-dir", dir, "outbox", "ls", "-o", "json")
	if n := strings.Count(out, `"seq"`); n != 2 {
		t.Errorf("outbox has %d entries, want 2: %s", n, out)
	}
}

func TestDocsImport_Enqueue(t *testing.T) {
	t.Chdir(t.TempDir())
	dir := t.TempDir()
	in := `{"id":"person_module/7","doc":{"portal_type":"Person","title":"Known"}}
{"id":"person_module/local-01JABCDEFGHJKMNPQRSTVWXYZ0","doc":{"portal_type":"Person","title":"New Here"}}
`
	if _, errOut, code := runDocs(t, in, "--data-dir", dir, "docs", "import", "--enqueue", "-"); code != 0 {
		t.Fatalf("import --enqueue: exit %d: %s", code, errOut)
	}
	out, _, _ := runDocs(t, "", "--data-dir", dir, "outbox", "ls", "-o", "json")
	if !strings.Contains(out, `"op":"post"`) || !strings.Contains(out, `"op":"put"`) {
		t.Errorf("outbox after import --enqueue: %s", out)
	}
	// Without --enqueue, the replica is seeded and nothing is queued.
	dir2 := t.TempDir()
	if _, errOut, code := runDocs(t, in, "--data-dir", dir2, "docs", "import", "-"); code != 0 {
		t.Fatalf("import: exit %d: %s", code, errOut)
	}
	out, _, _ = runDocs(t, "", "--data-dir", dir2, "outbox", "ls", "-o", "json")
	if strings.TrimSpace(out) != "[]" {
		t.Errorf("outbox after a plain import: %s", out)
	}
}
