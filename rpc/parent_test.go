package rpc_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"sitesync.example/gateway"
)

// TestParent_Checked: a post's parent_relative_url must name its type's module, or a document
// in the replica (a pending post's local id included) that the peer reads and whose type may
// hold the new one; anything else is 400 invalid on that field, and nothing is stored. A
// parent the peer may not read is refused exactly as one that does not exist.
func TestParent_Checked(t *testing.T) {
	s := newService(t, "", scopeSeed...)
	count := func() (n int) {
		s.DB.Reader().QueryRow(`SELECT count(*) FROM outbox`).Scan(&n)
		return n
	}
	person := func(parent string) string {
		return fmt.Sprintf(`{"doc":{"portal_type":"Person","title":"Ann","parent_relative_url":%q}}`, parent)
	}
	line := func(parent string) string {
		return fmt.Sprintf(`{"doc":{"portal_type":"Sale Order Line","resource":"product_module/1","quantity":1,"parent_relative_url":%q}}`, parent)
	}
	before := count()
	refused := map[string]error{}
	for _, c := range []struct{ name, role, params string }{
		{"HiddenOrder", "clerk", person("sale_order_module/1")},
		{"AbsentOrder", "clerk", person("sale_order_module/999")},
		{"UnknownModule", "clerk", person("foo_module")},
		{"OtherModule", "clerk", person("organisation_module")},
		{"PersonInPerson", "clerk", person("person_module/1")},
		{"LineInProduct", "storekeeper", line("product_module/1")},
		{"LineInAbsentOrder", "storekeeper", line("sale_order_module/999")},
		{"LineInModule", "storekeeper", line("sale_order_module")},
	} {
		_, err := call(t, s, c.role, "post", c.params)
		if err == nil {
			t.Errorf("%s: the post was accepted", c.name)
			continue
		}
		e := errOf(t, err)
		if e.Code != gateway.EINVALID || e.Fields["parent_relative_url"] == "" {
			t.Errorf("%s: %+v, want 400 invalid naming parent_relative_url", c.name, e)
		}
		refused[c.name] = err
	}
	if h, a := refused["HiddenOrder"], refused["AbsentOrder"]; h != nil && a != nil &&
		strings.ReplaceAll(h.Error(), "/1 ", "/999 ") != a.Error() {
		t.Errorf("a hidden parent gives %q, an absent one %q: want the same", h, a)
	}
	if n := count(); n != before {
		t.Errorf("the refused posts queued %d entries", n-before)
	}
	// Allowed places: the type's module, a readable order, an order still being posted.
	mustCall(t, s, "clerk", "post", person("person_module"))
	mustCall(t, s, "storekeeper", "post", line("sale_order_module/1"))
	var order struct{ ID string }
	json.Unmarshal(mustCall(t, s, "storekeeper", "post", `{"doc":{"portal_type":"Sale Order","destination":"organisation_module/1"}}`), &order)
	got := mustCall(t, s, "storekeeper", "post", line(order.ID))
	if !strings.Contains(string(got), order.ID+"/local-") {
		t.Errorf("a line posted in %s got %s", order.ID, got)
	}
}
