// Command erp5sim serves the ERP5 test double (package erp5sim) on a TCP address, optionally
// behind a simulated satellite link, for smoke tests, demos and benchmarks:
//
//	erp5sim --listen 127.0.0.1:8080 [--seed N] [--docs N] [--stock] [--link 384kbit,700ms]
//
// It prints the HATEOAS site URL and runs until interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"sitesync.example/gateway/erp5sim"
	"sitesync.example/gateway/linksim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args, serves until ctx is done and returns the exit code: 0, 1 for a failure,
// 2 for a usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("erp5sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	seed := fs.Int64("seed", 1, "seed of the generated data")
	docs := fs.Int("docs", 2000, "number of documents to generate (0 for none)")
	stock := fs.Bool("stock", false, "stock ERP5: no sync gateway receiver (its URLs answer 404)")
	link := fs.String("link", "", `simulate a link, "RATE[/RATE],RTT" (e.g. 384kbit/444kbit,700ms)`)
	sitePath := fs.String("site-path", erp5sim.DefaultSitePath, "path of the HATEOAS web site")
	odd := fs.Bool("odd-urls", false, "use unusual entry-point URLs, as jIO's test double does")
	user := fs.String("user", "", "require HTTP Basic (or __ac cookie) auth as USER:PASSWORD")
	token := fs.String("token", "", "accept this X-ACCESS-TOKEN")
	lag := fs.Duration("index-lag", 0, "delay before searches see an edit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "erp5sim: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	opts := erp5sim.Options{SitePath: *sitePath, Stock: *stock, Seed: *seed, Docs: *docs, IndexLag: *lag}
	if *odd {
		opts.Routes = erp5sim.OddRoutes
	}
	if *user != "" {
		u, p, ok := strings.Cut(*user, ":")
		if !ok || u == "" {
			fmt.Fprintf(stderr, "erp5sim: --user wants USER:PASSWORD, got %q\n", *user)
			return 2
		}
		opts.Users = map[string]string{u: p}
	}
	if *token != "" {
		opts.Tokens = []string{*token}
	}
	var cfg linksim.Config
	if *link != "" {
		var err error
		if cfg, err = linksim.ParseConfig(*link); err != nil {
			fmt.Fprintf(stderr, "erp5sim: --link: %v\n", err)
			return 2
		}
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "erp5sim: %v\n", err)
		return 1
	}
	desc := "no link simulation"
	if *link != "" {
		ln = linksim.WrapListener(ln, linksim.New(cfg))
		desc = "link " + cfg.String()
	}
	s := erp5sim.New(opts)
	mode := "receiver on"
	if *stock {
		mode = "stock, no receiver"
	}
	fmt.Fprintf(stdout, "erp5sim: serving http://%s%s/ (%d documents, %s, %s)\n", ln.Addr(), s.SitePath(), len(s.Documents()), mode, desc)

	srv := &http.Server{Handler: s, ReadHeaderTimeout: time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		fmt.Fprintf(stderr, "erp5sim: %v\n", err)
		return 1
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		srv.Close()
	}
	return 0
}
