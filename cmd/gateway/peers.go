package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mdp/qrterminal/v3"
	"github.com/spf13/cobra"

	"sitesync.example/gateway"
	"sitesync.example/gateway/control"
	"sitesync.example/gateway/lan"
	"sitesync.example/gateway/sqlite"
)

func init() { register(newPeersCommand) }

func newPeersCommand(m *Main) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "peers",
		Short: "Pair, list and revoke the browsers that use the gateway",
		Long: `Each browser (or script) that talks to the gateway is a peer with a name and a role.
A peer pairs once with a one-time invite link; its token is kept by the browser. Revoking a
peer refuses its token and closes its open channels at once.`,
	}
	cmd.AddCommand(newPeersInviteCommand(m), newPeersLsCommand(m), newPeersRevokeCommand(m))
	return cmd
}

func newPeersInviteCommand(m *Main) *cobra.Command {
	var (
		role string
		ttl  time.Duration
		noQR bool
	)
	cmd := &cobra.Command{
		Use:   "invite NAME --role ROLE [--ttl 24h]",
		Short: "Print a one-time pairing link and its QR code for a new peer",
		Long: `Print a one-time link http://HOST:PORT/pair#code=CODE and a terminal QR code. Opening it
pairs that browser as peer NAME with role ROLE. HOST is lan.public_url's when set, else the
listen address (an address of this machine's LAN interface when listening on all of them).
The code works once and expires after --ttl.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if ttl <= 0 {
				return usagef("--ttl must be positive")
			}
			if err := sqlite.ValidatePeerName("peer name", a[0]); err != nil {
				return &UsageError{errors.New(gateway.ErrorMessage(err))}
			}
			if err := sqlite.ValidatePeerName("role", role); err != nil {
				return &UsageError{errors.New(gateway.ErrorMessage(err))}
			}
			pol, err := m.loadPolicy(m.Config.Policy)
			if err != nil {
				return err
			}
			if !pol.HasRole(role) {
				return usagef("role %q is not in the policy (%s); its roles: %s",
					role, cmp.Or(m.Config.Policy, "the embedded example"), strings.Join(pol.Roles(), ", "))
			}
			base, err := lan.BaseURL(lanServerConfig(m.Config.LAN), m.Config.LAN.Listen)
			if err != nil {
				return &ConfigError{"lan", err}
			}
			db, err := m.CreateDB(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			code, err := sqlite.NewPeerService(db).CreateInvite(cmd.Context(), a[0], role, ttl)
			if err != nil {
				return peersUserError(err)
			}
			link := lan.PairLink(base, code)
			expires := time.Now().Add(ttl).UTC().Format("2006-01-02 15:04 MST")
			fmt.Fprintln(m.Stdout, link)
			fmt.Fprintf(m.Stdout, "One-time pairing link for peer %q (role %s), valid until %s.\n", a[0], role, expires)
			if !noQR {
				fmt.Fprintln(m.Stdout)
				qrterminal.GenerateWithConfig(link, qrterminal.Config{
					Level: qrterminal.M, Writer: m.Stdout, HalfBlocks: true, QuietZone: 2,
				})
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "the peer's role, as named in the policy file (required)")
	cmd.Flags().DurationVar(&ttl, "ttl", sqlite.DefaultInviteTTL, "how long the link stays valid")
	cmd.Flags().BoolVar(&noQR, "no-qr", false, "print the link only, without the QR code")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}

// PeerListing is one peer as `gateway peers ls -o json` prints it.
type PeerListing struct {
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	CreatedAt time.Time  `json:"created_at"`
	LastSeen  *time.Time `json:"last_seen"`
	Online    bool       `json:"online"`
	Address   string     `json:"address"`
}

func newPeersLsCommand(m *Main) *cobra.Command {
	var (
		output    string
		noHeaders bool
	)
	cmd := &cobra.Command{
		Use:   "ls [-o table|json]",
		Short: "List the paired peers, and which are online",
		Long: `List the paired peers (revoked ones are left out). ONLINE comes from the running
gateway through its control socket; when it is not running every peer shows offline.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usagef("-o %q: want table or json", output)
			}
			ctx := cmd.Context()
			db, err := m.OpenDB(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			peers, err := sqlite.NewPeerService(db).FindPeers(ctx)
			if err != nil {
				return err
			}
			online := map[string]bool{}
			names, live, err := peersControlOnline(ctx, m.SocketPath())
			if err != nil {
				fmt.Fprintf(m.Stderr, "gateway: cannot ask the running gateway who is online: %v\n", err)
			}
			for _, n := range names {
				online[n] = true
			}
			list := make([]PeerListing, 0, len(peers))
			for _, p := range peers {
				l := PeerListing{Name: p.Name, Role: p.Role, CreatedAt: p.CreatedAt.UTC(), Online: online[p.Name], Address: p.Address}
				if !p.LastSeen.IsZero() {
					seen := p.LastSeen.UTC()
					l.LastSeen = &seen
				}
				list = append(list, l)
			}
			if output == "json" {
				enc := json.NewEncoder(m.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			return printPeers(m.Stdout, list, live, noHeaders)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().BoolVar(&noHeaders, "no-headers", false, "leave out the table's header line")
	return cmd
}

// printPeers writes the peers as a table.
func printPeers(w io.Writer, list []PeerListing, live, noHeaders bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if !noHeaders {
		fmt.Fprintln(tw, "NAME\tROLE\tONLINE\tLAST-SEEN\tADDRESS\tPAIRED")
	}
	now := time.Now()
	for _, p := range list {
		onl := "no"
		switch {
		case p.Online:
			onl = "yes"
		case !live:
			onl = "?"
		}
		seen := "never"
		if p.LastSeen != nil {
			seen = peersAgo(now.Sub(*p.LastSeen))
		}
		addr := p.Address
		if addr == "" {
			addr = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Role, onl, seen, addr, p.CreatedAt.Format("2006-01-02"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !noHeaders {
		summary := fmt.Sprintf("-- %d %s", len(list), obPlural(len(list), "peer", "peers"))
		if !live {
			summary += "; the gateway is not running (online unknown)"
		}
		fmt.Fprintln(w, summary)
	}
	return nil
}

// peersAgo renders a duration in the past coarsely: "12s ago", "3m ago", "5h ago", "2d ago".
func peersAgo(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", max(int(d.Seconds()), 0))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func newPeersRevokeCommand(m *Main) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke NAME",
		Short: "Refuse a peer's token and close its open channels",
		Long: `Revoke a peer: its token is refused from now on and, when the gateway is running, its open
channels close at once (through the control socket; otherwise the running gateway notices
within a second). Pair the browser again with a new invite to let it back.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			ctx := cmd.Context()
			db, err := m.OpenDB(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			if err := sqlite.NewPeerService(db).RevokePeer(ctx, a[0]); err != nil {
				return peersUserError(err)
			}
			closed, live, err := peersControlRevoke(ctx, m.SocketPath(), a[0])
			switch {
			case err != nil:
				fmt.Fprintf(m.Stdout, "revoked %s; the running gateway did not answer (%v) and will close its channels within a second\n", a[0], err)
			case live:
				fmt.Fprintf(m.Stdout, "revoked %s; closed %d open channel(s)\n", a[0], closed)
			default:
				fmt.Fprintf(m.Stdout, "revoked %s (the gateway is not running)\n", a[0])
			}
			return nil
		},
	}
}

// peersUserError turns a *gateway.Error into its message, for the terminal.
func peersUserError(err error) error {
	var ge *gateway.Error
	if errors.As(err, &ge) {
		return errors.New(ge.Message)
	}
	return err
}

// peersControlOnline asks a running serve which peers are online, through the control socket
// where serve mounts lan.Server.ControlHandler under "/peers/". handled is false when no
// serve answers; the commands then act on the database alone (a running serve still notices
// a revocation within a second).
func peersControlOnline(ctx context.Context, socket string) ([]string, bool, error) {
	var out lan.ControlOnline
	handled, err := control.NewClient(socket).Do(ctx, http.MethodGet, lan.ControlOnlinePath, nil, &out)
	return out.Online, handled, err
}

// peersControlRevoke asks serve to close a peer's channels.
func peersControlRevoke(ctx context.Context, socket, name string) (int, bool, error) {
	var out lan.ControlRevoke
	handled, err := control.NewClient(socket).Do(ctx, http.MethodPost, lan.ControlRevokePath, lan.ControlRevoke{Name: name}, &out)
	return out.Closed, handled, err
}

// lanServerConfig maps the `lan:` section onto the LAN server's configuration.
func lanServerConfig(c LANConfig) lan.Config {
	return lan.Config{
		Listen:       c.Listen,
		PublicURL:    c.PublicURL,
		Enrollment:   c.Enrollment,
		DefaultRole:  c.DefaultRole,
		TLSCert:      c.TLS.Cert,
		TLSKey:       c.TLS.Key,
		WebRTCListen: c.WebRTC.Listen,
		UDPPort:      c.WebRTC.UDPPort,
		TCPFallback:  c.WebRTC.TCPFallback,
		Interfaces:   c.WebRTC.Interfaces,
	}
}
