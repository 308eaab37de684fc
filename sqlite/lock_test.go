package sqlite_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"sitesync.example/gateway/sqlite"
)

// TestLockDirHelper holds a data directory's lock in a child process until its stdin closes.
func TestLockDirHelper(t *testing.T) {
	dir := os.Getenv("GATEWAY_LOCK_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process of TestLockDir")
	}
	l, err := sqlite.LockDir(dir)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	fmt.Println("locked")
	buf := make([]byte, 1)
	os.Stdin.Read(buf)
	l.Release()
	os.Exit(0)
}

// TestLockDir takes a data directory's lock in another process: this one is refused with
// the holder's pid, and gets it once the holder has ended.
func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockDirHelper$")
	cmd.Env = append(os.Environ(), "GATEWAY_LOCK_HELPER_DIR="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 7)
	if _, err := out.Read(line); err != nil || string(line) != "locked\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}
	_, err = sqlite.LockDir(dir)
	var held *sqlite.HeldError
	if !errors.As(err, &held) {
		t.Fatalf("second lock: %v, want a HeldError", err)
	}
	if held.PID != cmd.Process.Pid {
		t.Errorf("holder pid %d, want %d", held.PID, cmd.Process.Pid)
	}
	want := fmt.Sprintf("another gateway serve (pid %d) holds %s", cmd.Process.Pid, dir)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q, want %q", err, want)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	l, err := sqlite.LockDir(dir)
	if err != nil {
		t.Fatalf("lock after the holder ended: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
}

// TestCloseAfterFailedOpen: a DB whose Open failed closes, twice, without a panic.
func TestCloseAfterFailedOpen(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(dir+"/"+sqlite.FileName, 0o700); err != nil {
		t.Fatal(err)
	}
	db := sqlite.NewDB(dir + "/" + sqlite.FileName)
	if err := db.Open(t.Context()); err == nil {
		t.Fatal("Open of a directory succeeded")
	}
	if err := db.Close(); err != nil {
		t.Errorf("Close after a failed Open: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
