package sqlite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// LockFileName is the data directory's lock file, next to the database: the process that
// holds an exclusive flock on it owns the data directory (docs/DESIGN.md §6: one serve per
// data directory, so one process sends and makes epochs).
const LockFileName = "gateway.lock"

// DirLock is an exclusive lock on a data directory, held until Release or the process's end
// (the kernel drops a flock with its holder, even after kill -9).
type DirLock struct {
	f *os.File
}

// HeldError is returned by LockDir when another process holds the data directory.
type HeldError struct {
	// Dir is the data directory.
	Dir string
	// PID is the holder's process id, 0 when it could not be read.
	PID int
}

// Error implements error.
func (e *HeldError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("another gateway serve (pid %d) holds %s", e.PID, e.Dir)
	}
	return fmt.Sprintf("another gateway serve holds %s", e.Dir)
}

// LockDir takes the exclusive lock of the data directory dir, creating dir when needed. It
// never waits: when another process holds it, the error is a *HeldError naming its pid.
// Nothing but the lock file is touched.
func LockDir(dir string) (*DirLock, error) {
	return LockDirWithin(dir, 0)
}

// LockDirWithin is LockDir retrying for up to wait while the lock is held: an operator
// command that writes holds it shared for the few milliseconds it takes to make its epoch.
func LockDirWithin(dir string, wait time.Duration) (*DirLock, error) {
	deadline := time.Now().Add(wait)
	for {
		l, err := lockDir(dir)
		var held *HeldError
		if !errors.As(err, &held) || !time.Now().Before(deadline) {
			return l, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func lockDir(dir string) (*DirLock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	path := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			held := &HeldError{Dir: dir}
			if b, rerr := os.ReadFile(path); rerr == nil {
				held.PID, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			}
			return nil, held
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	// The pid is for the message of the next process that tries; the lock is the flock.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &DirLock{f: f}, nil
}

// lockDirShared takes a shared lock on dir's lock file, for a process that writes while
// serve may be down; a *HeldError when serve (the exclusive holder) runs. dir must exist.
func lockDirShared(dir string) (*DirLock, error) {
	f, err := os.OpenFile(filepath.Join(dir, LockFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &HeldError{Dir: dir}
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	return &DirLock{f: f}, nil
}

// Release drops the lock. Safe on nil and more than once.
func (l *DirLock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	// Closing the file drops the flock; the file stays (removing it would race a process
	// that has it open and is about to lock it).
	return f.Close()
}
