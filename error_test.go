package gateway_test

import (
	"errors"
	"fmt"
	"testing"

	"sitesync.example/gateway"
)

func TestErrorCode(t *testing.T) {
	err := fmt.Errorf("wrap: %w", gateway.ReasonErrorf(gateway.ECONFLICT, "key_reused", "key %q was used for another request", "k1"))
	if got, want := gateway.ErrorCode(err), gateway.ECONFLICT; got != want {
		t.Errorf("code = %q, want %q", got, want)
	}
	if got, want := gateway.ErrorReason(err), "key_reused"; got != want {
		t.Errorf("reason = %q, want %q", got, want)
	}
	if got, want := gateway.Status(gateway.ErrorCode(err)), 409; got != want {
		t.Errorf("status = %d, want %d", got, want)
	}
	plain := errors.New("disk on fire")
	if gateway.ErrorCode(plain) != gateway.EINTERNAL || gateway.ErrorMessage(plain) != "internal error" {
		t.Errorf("plain error leaks: %q %q", gateway.ErrorCode(plain), gateway.ErrorMessage(plain))
	}
	if gateway.ErrorCode(nil) != "" {
		t.Error("nil error has a code")
	}
}

func TestValidateID(t *testing.T) {
	ok := []string{"person_module/20150119_azerty", "sale_order_module/5/1", "a", "x.y-z_1"}
	bad := []string{"", "/a", "a/", "a//b", "a/../b", "./a", "a/.", "a%2Fb", "a b", "a\x00b", "é", string(make([]byte, 256))}
	for _, id := range ok {
		if err := gateway.ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v", id, err)
		}
	}
	for _, id := range bad {
		if err := gateway.ValidateID(id); gateway.ErrorCode(err) != gateway.EINVALID {
			t.Errorf("ValidateID(%q) = %v, want EINVALID", id, err)
		}
	}
}

func TestModuleOf(t *testing.T) {
	tests := map[string]string{
		"Person":                "person_module",
		"Sale Order":            "sale_order_module",
		"Purchase Packing List": "purchase_packing_list_module",
	}
	for pt, want := range tests {
		if got := gateway.ModuleOf(pt, gateway.DefaultModules()); got != want {
			t.Errorf("ModuleOf(%q) = %q, want %q", pt, got, want)
		}
	}
	if !gateway.IsLocalID("person_module/local-01J") || gateway.IsLocalID("person_module/123") {
		t.Error("IsLocalID wrong")
	}
}
