package gateway

import (
	"encoding/json"
	"strings"
	"time"
)

// MaxIDLength is the longest document id accepted, in bytes (docs/DESIGN.md §3).
const MaxIDLength = 255

// Document is one ERP5 document as the replica holds it. Body is the JSON object exactly as
// stored (key order and number literals preserved); ID is its relative URL.
type Document struct {
	ID         string
	PortalType string
	Body       json.RawMessage
}

// ValidateID reports whether id is a relative URL the gateway accepts: segments of
// [A-Za-z0-9_.-], none empty, "." or "..", joined by "/", at most MaxIDLength bytes.
func ValidateID(id string) error {
	if id == "" {
		return Errorf(EINVALID, "id is empty")
	}
	if len(id) > MaxIDLength {
		return Errorf(EINVALID, "id is longer than %d bytes", MaxIDLength)
	}
	for _, seg := range strings.Split(id, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return Errorf(EINVALID, "id %q has an empty, \".\" or \"..\" segment", id)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
				return Errorf(EINVALID, "id %q has a character outside [A-Za-z0-9_.-/]", id)
			}
		}
	}
	return nil
}

// IsLocalID reports whether id was made by the gateway for a document ERP5 has not yet
// numbered: its last segment starts with "local-".
func IsLocalID(id string) bool {
	i := strings.LastIndexByte(id, '/')
	return strings.HasPrefix(id[i+1:], "local-")
}

// ModuleOf returns the ERP5 module that holds documents of portalType, from modules when it
// names one, else by ERP5's convention: lower case, "_" for spaces, then "_module".
func ModuleOf(portalType string, modules map[string]string) string {
	if m, ok := modules[portalType]; ok && m != "" {
		return m
	}
	return strings.ReplaceAll(strings.ToLower(portalType), " ", "_") + "_module"
}

// DefaultModules maps the portal types of the built-in configuration to their ERP5 modules.
func DefaultModules() map[string]string {
	return map[string]string{
		"Person":       "person_module",
		"Organisation": "organisation_module",
		"Product":      "product_module",
		"Sale Order":   "sale_order_module",
	}
}

// Method names of the data-channel RPC (docs/DESIGN.md §3).
const (
	MethodGet      = "get"
	MethodPost     = "post"
	MethodPut      = "put"
	MethodRemove   = "remove"
	MethodAction   = "action"
	MethodAllDocs  = "allDocs"
	MethodSync     = "sync"
	MethodDescribe = "describe"
	MethodStatus   = "status"
)

// Peer is a paired browser (or Go client) as the gateway knows it.
type Peer struct {
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	LastSeen  time.Time `json:"last_seen"`
	Online    bool      `json:"online"`
	Address   string    `json:"address"`
}

// Actor is who makes a request: a peer with its role, or the operator (Operator true), whose
// writes skip roles and schemas unless Role is set.
type Actor struct {
	Peer     string
	Role     string
	Operator bool
}
