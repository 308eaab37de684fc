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

func TestDocsImport_SetCursors(t *testing.T) {
	t.Chdir(t.TempDir())
	dir := t.TempDir()
	in := `{"id":"person_module/7","doc":{"portal_type":"Person","title":"Known"},"version":"2026-11-20T10:00:00.000001Z","modification_date":"Fri, 20 Nov 2026 10:00:00 +0000"}
{"id":"person_module/8","doc":{"portal_type":"Person","title":"Later"},"version":"2026-11-21T09:30:00.000002Z","modification_date":"2026-11-21 09:30:00"}
`
	out, errOut, code := runDocs(t, in, "--data-dir", dir, "docs", "import", "--set-cursors", "-")
	if code != 0 {
		t.Fatalf("import --set-cursors: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "scope Person: 2 documents") || !strings.Contains(out, "21 Nov 2026 09:30:00") {
		t.Errorf("output: %s", out)
	}
	if _, errOut, code := runDocs(t, in, "--data-dir", dir, "docs", "import", "--set-cursors", "--enqueue", "-"); code != 2 {
		t.Errorf("--set-cursors --enqueue: exit %d, want 2: %s", code, errOut)
	}
}
