//go:build tools

// Package tools pins the modules the project builds on, so that `go mod tidy` keeps them
// while the packages that import them are being written.
package tools

import (
	_ "cel.dev/cel-go/cel"
	_ "github.com/cenkalti/backoff/v5"
	_ "github.com/chromedp/chromedp"
	_ "github.com/gorilla/websocket"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/mdp/qrterminal/v3"
	_ "github.com/oklog/ulid/v2"
	_ "github.com/pion/webrtc/v4"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "go.yaml.in/yaml/v4"
	_ "modernc.org/sqlite"
)
