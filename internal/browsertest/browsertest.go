// Package browsertest starts Debian's headless Chromium for the browser tests, with the
// flags a root, loopback-only test machine needs.
package browsertest

import (
	"os"
	"os/exec"
	"testing"

	"github.com/chromedp/chromedp"
)

// ChromiumPath finds Debian's chromium. A missing browser fails the test — the browser is
// what site users run — unless GATEWAY_SKIP_BROWSER=1 says to skip it.
func ChromiumPath(tb testing.TB) string {
	tb.Helper()
	if os.Getenv("GATEWAY_SKIP_BROWSER") == "1" {
		tb.Skip("GATEWAY_SKIP_BROWSER=1: browser tests skipped")
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	tb.Fatal("chromium is not installed: install Debian's chromium (apt-get install chromium, as .ci/run does) or set GATEWAY_SKIP_BROWSER=1 to skip the browser tests")
	return ""
}

// Options are the allocator options of a headless Chromium with a fresh profile: no sandbox
// (tests run as root), no background networking (the machine has no Internet), loopback ICE
// candidates allowed and host addresses not hidden behind mDNS.
func Options(tb testing.TB) []chromedp.ExecAllocatorOption {
	tb.Helper()
	return []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ChromiumPath(tb)),
		chromedp.NoSandbox,
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(tb.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "Translate,WebRtcHideLocalIpsWithMdns"),
	}
}
