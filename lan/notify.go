package lan

import (
	"encoding/json"
	"net/http"

	"sitesync.example/gateway"
	"sitesync.example/gateway/lan/wire"
)

// Notify sends the notification method to every open channel. params is called once per
// peer (not per channel) with the peer's actor and returns the params, or false to skip the
// peer. Notify does not wait for the sends; a channel whose send queue is full misses the
// notification.
func (s *Server) Notify(method string, params func(peer gateway.Actor) (any, bool)) {
	type built struct {
		msg []byte
		ok  bool
	}
	byPeer := map[string]built{}
	for _, c := range s.openConns() {
		b, seen := byPeer[c.peer.Name]
		if !seen {
			if p, ok := params(c.actor); ok {
				raw, err := json.Marshal(p)
				if err != nil {
					s.Logger.Error("notification params do not marshal", "method", method, "err", err)
					return
				}
				msg, _ := json.Marshal(wire.Notification{JSONRPC: wire.Version, Method: method, Params: raw})
				b = built{msg: msg, ok: true}
			}
			byPeer[c.peer.Name] = b
		}
		if b.ok {
			c.out.enqueue(b.msg, false, false)
		}
	}
}

// NotifyChanged sends `changed` {"ids", "renamed"} to every open channel, with only the ids
// its peer may read (and the renames whose new id it may read); a peer left with nothing is
// skipped; an id named twice is sent once. mayRead nil lets every peer see everything.
func (s *Server) NotifyChanged(ids []string, renamed map[string]string, mayRead func(peer gateway.Actor, id string) bool) {
	ids = uniqueIDs(ids)
	s.Notify(wire.NotifyChanged, func(a gateway.Actor) (any, bool) {
		ch := wire.Changed{IDs: []string{}, Renamed: map[string]string{}}
		for _, id := range ids {
			if mayRead == nil || mayRead(a, id) {
				ch.IDs = append(ch.IDs, id)
			}
		}
		for old, id := range renamed {
			if mayRead == nil || mayRead(a, id) {
				ch.Renamed[old] = id
			}
		}
		return ch, len(ch.IDs) > 0 || len(ch.Renamed) > 0
	})
}

// NotifyStatus sends `status` to every open channel; status returns a peer's params (the
// shape of the status method's result), or an error to skip the peer.
func (s *Server) NotifyStatus(status func(peer gateway.Actor) (any, error)) {
	s.Notify(wire.NotifyStatus, func(a gateway.Actor) (any, bool) {
		v, err := status(a)
		if err != nil {
			s.Logger.Warn("status notification", "peer", a.Peer, "err", err)
			return nil, false
		}
		return v, true
	})
}

// Control endpoints, served on the control socket by ControlHandler.
const (
	// ControlOnlinePath answers GET with {"online": [names…]}.
	ControlOnlinePath = "/peers/online"
	// ControlRevokePath takes POST {"name": NAME}, closes the peer's channels and answers
	// {"closed": n}.
	ControlRevokePath = "/peers/revoke"
)

// ControlOnline is the answer of ControlOnlinePath.
type ControlOnline struct {
	Online []string `json:"online"`
}

// ControlRevoke is the request and answer of ControlRevokePath.
type ControlRevoke struct {
	Name   string `json:"name"`
	Closed int    `json:"closed"`
}

// ControlHandler serves the peers endpoints of the control socket (ControlOnlinePath and
// ControlRevokePath), for `gateway peers ls` and `gateway peers revoke`.
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+ControlOnlinePath, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, ControlOnline{Online: s.OnlinePeers()})
	})
	mux.HandleFunc("POST "+ControlRevokePath, func(w http.ResponseWriter, r *http.Request) {
		var req ControlRevoke
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&req); err != nil || req.Name == "" {
			writeJSON(w, http.StatusBadRequest, wire.HTTPError{Status: 400, Reason: wire.ReasonBadRequest, Message: `the body must be {"name": "…"}`})
			return
		}
		n := s.RevokePeer(req.Name)
		if n > 0 {
			s.Logger.Info("peer revoked; channels closed", "peer", req.Name, "channels", n)
		}
		writeJSON(w, http.StatusOK, ControlRevoke{Name: req.Name, Closed: n})
	})
	return mux
}

// uniqueIDs returns ids without repeats, in the order of their first appearance.
func uniqueIDs(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
