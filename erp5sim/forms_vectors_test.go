package erp5sim_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"sitesync.example/gateway/erp5sim"
)

// formsVector is a forms vector (erp5/testdata/forms/*.json), shared with the Python forms
// core (erp5/test_forms.py): the site's forms and workflows, then requests and answers.
type formsVector struct {
	Name string `json:"name"`
	Site struct {
		Forms     map[string]map[string]any `json:"forms"`
		Workflows map[string]map[string]any `json:"workflows"`
	} `json:"site"`
	Steps []struct {
		Name    string `json:"name"`
		Request struct {
			Encoding string `json:"encoding"`
			Body     any    `json:"body"`
		} `json:"request"`
		Response struct {
			Status   int    `json:"status"`
			Encoding string `json:"encoding"`
			Body     any    `json:"body"`
		} `json:"response"`
	} `json:"steps"`
}

// TestFormsVectors replays the forms vectors against the double: the same answers (tags
// included) as the Python core gives.
func TestFormsVectors(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join(vectorDir, "forms", "*.json"))
	if len(paths) == 0 {
		t.Fatal("no forms vectors")
	}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		var v formsVector
		if err := d.Decode(&v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		t.Run(v.Name, func(t *testing.T) {
			s, c := newDouble(t, erp5sim.Options{})
			for _, pt := range []string{"Person", "Organisation", "Product", "Sale Order", "Sale Order Line"} {
				s.SetForm(pt, nil)
				s.SetWorkflow(pt, nil)
			}
			for pt, m := range v.Site.Forms {
				f, err := erp5sim.FormFromReceiver(m)
				if err != nil {
					t.Fatal(err)
				}
				s.SetForm(pt, f)
			}
			for pt, m := range v.Site.Workflows {
				w, err := erp5sim.WorkflowFromReceiver(m)
				if err != nil {
					t.Fatal(err)
				}
				s.SetWorkflow(pt, w)
			}
			for i, step := range v.Steps {
				r, got := c.postJSON(s, erp5sim.FormsScript, step.Request.Encoding, step.Request.Body)
				if r.status != step.Response.Status {
					t.Fatalf("step %d (%s): status %d, want %d: %s", i, step.Name, r.status, step.Response.Status, r.body)
				}
				if step.Response.Encoding != "" && r.header.Get("Content-Encoding") != step.Response.Encoding {
					t.Errorf("step %d: encoding %q", i, r.header.Get("Content-Encoding"))
				}
				if got == nil {
					got = r.json(t)
				}
				for _, p := range matchJSON(step.Response.Body, any(got), map[string]any{}, "$") {
					t.Errorf("step %d (%s): %s", i, step.Name, p)
				}
			}
		})
	}
}
