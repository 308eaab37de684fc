package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"sitesync.example/gateway/query"
)

// FormsPath is the receiver's forms endpoint: one request returns the view form and the
// workflow graph of every portal type the site needs (erp5/sync_gateway_forms.py).
const FormsPath = "ERP5Site_getSyncGatewayForms"

// DefaultFormsInterval is how often the downlink asks ERP5 for the forms it learned: ERP5's
// forms change rarely; a change reaches the site within a day, or at once on RefreshForms.
const DefaultFormsInterval = 24 * time.Hour

// maxStateSamples bounds the documents a stock learning traverses per portal type to see
// the transitions of each state.
const maxStateSamples = 8

// StoredForm is one learned portal type as the database keeps it (sqlite.LearnedForm has the
// same fields).
type StoredForm struct {
	PortalType string
	// Form and Workflow are JSON (Form, Workflow), nil when none is known.
	Form, Workflow json.RawMessage
	// Hash is LearnedType.Hash; Tag the receiver's tag of its answer.
	Hash, Tag string
	// LearnedAt is when Hash last changed; CheckedAt when ERP5 was last asked.
	LearnedAt, CheckedAt time.Time
}

// FormStore keeps the learned forms; *sqlite.DB provides it through cmd/gateway.
type FormStore interface {
	// LearnedForms returns every learned portal type.
	LearnedForms(ctx context.Context) ([]StoredForm, error)
	// SetLearnedForms stores learned types (a row whose hash is unchanged keeps its
	// learned_at).
	SetLearnedForms(ctx context.Context, forms []StoredForm) error
	// StateSamples returns, for a portal type, one replicated document (known to ERP5) per
	// value of its state field ("" state field: any one document, under key "").
	StateSamples(ctx context.Context, portalType, stateField string) (map[string]string, error)
}

// Stored returns the type as the database stores it, checked now.
func (t *LearnedType) Stored(now time.Time) (StoredForm, error) {
	sf := StoredForm{PortalType: t.PortalType, Hash: t.Hash(), Tag: t.Tag, CheckedAt: now, LearnedAt: now}
	var err error
	if t.Form != nil {
		if sf.Form, err = marshalCanonical(t.Form); err != nil {
			return sf, err
		}
	}
	if t.Workflow != nil {
		if sf.Workflow, err = marshalCanonical(t.Workflow); err != nil {
			return sf, err
		}
	}
	return sf, nil
}

// ParseStored reads a stored type back.
func ParseStored(sf StoredForm) (*LearnedType, error) {
	t := &LearnedType{PortalType: sf.PortalType, Tag: sf.Tag}
	if sf.Form != nil {
		if err := decodeUseNumber(sf.Form, &t.Form); err != nil {
			return nil, fmt.Errorf("learned form %s: %w", sf.PortalType, err)
		}
	}
	if sf.Workflow != nil {
		if err := decodeUseNumber(sf.Workflow, &t.Workflow); err != nil {
			return nil, fmt.Errorf("learned workflow %s: %w", sf.PortalType, err)
		}
	}
	return t, nil
}

// FormsRequest is the receiver's forms request.
type FormsRequest struct {
	Gateway     string            `json:"gateway"`
	View        string            `json:"view"`
	PortalTypes []string          `json:"portal_types"`
	Known       map[string]string `json:"known"`
}

// FormsResponse is the receiver's forms answer: one entry per named type, then the types
// their listboxes list.
type FormsResponse struct {
	Types []FormsAnswer `json:"types"`
}

// FormsAnswer is one type of a forms answer: unchanged (its tag was known), or its form and
// workflow graph (either null when ERP5 has none).
type FormsAnswer struct {
	PortalType string          `json:"portal_type"`
	Tag        string          `json:"tag"`
	Unchanged  bool            `json:"unchanged"`
	Form       json.RawMessage `json:"form"`
	Workflow   json.RawMessage `json:"workflow"`
}

// Forms asks the receiver for the forms and workflows of portal types (one request).
func (c *Client) Forms(ctx context.Context, req FormsRequest, encoding string) (*FormsResponse, error) {
	if err := c.init(); err != nil {
		return nil, err
	}
	if req.Known == nil {
		req.Known = map[string]string{}
	}
	plain, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("erp5 forms: %w", err)
	}
	body, err := c.codec.compress(encoding, plain)
	if err != nil {
		return nil, fmt.Errorf("erp5 forms: compress: %w", err)
	}
	ex, err := c.do(ctx, request{
		method:      http.MethodPost,
		url:         c.base.String() + FormsPath,
		contentType: "application/json",
		encoding:    encoding,
		accept:      "application/json",
		body:        body,
		expect:      16 << 10,
	})
	if err != nil {
		return nil, fmt.Errorf("erp5 forms: %w", err)
	}
	var out FormsResponse
	if err := decodeUseNumber(ex.body, &out); err != nil {
		return nil, fmt.Errorf("erp5 forms: %w", errors.Join(ErrBadResponse, err))
	}
	return &out, nil
}

// ParseReceiverForm builds the site's form from the receiver's form object: form_id, title,
// group_list ([group id, [field ids]]) and fields.
func ParseReceiverForm(raw json.RawMessage) (*Form, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var in struct {
		FormID    string                    `json:"form_id"`
		Title     string                    `json:"title"`
		GroupList [][]json.RawMessage       `json:"group_list"`
		Fields    map[string]map[string]any `json:"fields"`
	}
	if err := decodeUseNumber(raw, &in); err != nil {
		return nil, fmt.Errorf("form: %w", err)
	}
	src := formSource{formID: in.FormID, title: in.Title, fields: in.Fields}
	for _, g := range in.GroupList {
		if len(g) != 2 {
			return nil, fmt.Errorf("form %s: group_list: a group is not [id, fields]", in.FormID)
		}
		var grp FormGroup
		var ids []json.RawMessage
		if json.Unmarshal(g[0], &grp.ID) != nil || json.Unmarshal(g[1], &ids) != nil {
			return nil, fmt.Errorf("form %s: group_list: a group is not [id, fields]", in.FormID)
		}
		for _, e := range ids {
			var id string
			var pair []json.RawMessage
			if json.Unmarshal(e, &id) != nil && json.Unmarshal(e, &pair) == nil && len(pair) > 0 {
				json.Unmarshal(pair[0], &id)
			}
			if id != "" {
				grp.Fields = append(grp.Fields, id)
			}
		}
		src.groups = append(src.groups, grp)
	}
	return src.normalise(), nil
}

// ParseReceiverWorkflow builds a workflow from the receiver's graph: state_variable, states
// (title, transition ids in order) and the transitions' titles. It is complete.
func ParseReceiverWorkflow(raw json.RawMessage) (*Workflow, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var in struct {
		StateVariable string `json:"state_variable"`
		States        map[string]struct {
			Title       string   `json:"title"`
			Transitions []string `json:"transitions"`
		} `json:"states"`
		Transitions map[string]struct {
			Title string `json:"title"`
		} `json:"transitions"`
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, fmt.Errorf("workflow: %w", err)
	}
	if in.StateVariable == "" {
		return nil, fmt.Errorf("workflow: no state_variable")
	}
	w := &Workflow{StateField: in.StateVariable, States: map[string]*WorkflowState{}, Complete: true}
	for id, st := range in.States {
		ws := &WorkflowState{Title: st.Title, Transitions: []WorkflowTransition{}}
		for _, t := range st.Transitions {
			ws.Transitions = append(ws.Transitions, WorkflowTransition{Name: t, Title: in.Transitions[t].Title})
		}
		w.States[id] = ws
	}
	return w, nil
}

// ParseFormsAnswer turns a changed type of a forms answer into a LearnedType.
func ParseFormsAnswer(a FormsAnswer) (*LearnedType, error) {
	f, err := ParseReceiverForm(a.Form)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a.PortalType, err)
	}
	w, err := ParseReceiverWorkflow(a.Workflow)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a.PortalType, err)
	}
	return &LearnedType{PortalType: a.PortalType, Form: f, Workflow: w, Tag: a.Tag}, nil
}

// RefreshForms asks for the forms to be learned again at the next pass, and a pass now.
func (d *Downlink) RefreshForms() {
	d.mu.Lock()
	d.formsRequested = true
	d.mu.Unlock()
	d.SyncNow()
}

// formTypes returns the portal types whose forms the site needs: each scope's, then those
// their learned forms embed (an order's lines).
func (d *Downlink) formTypes(stored map[string]*LearnedType) []string {
	var out []string
	for _, sc := range d.Scopes {
		if !slices.Contains(out, sc.PortalType) {
			out = append(out, sc.PortalType)
		}
	}
	for i := 0; i < len(out); i++ {
		if t := stored[out[i]]; t != nil {
			for _, e := range t.Form.EmbeddedTypes() {
				if !slices.Contains(out, e) {
					out = append(out, e)
				}
			}
		}
	}
	return out
}

// learnFormsDue learns the forms when one is missing, when the oldest was asked more than
// FormsInterval ago, or when RefreshForms asked. A failure other than the budget or the end
// of the pass is logged and left for the next pass: the replica's data matters more.
func (d *Downlink) learnFormsDue(ctx context.Context, mode string, capa *Capability) error {
	if d.Forms == nil || d.FormsInterval < 0 {
		return nil
	}
	rows, err := d.Forms.LearnedForms(ctx)
	if err != nil {
		return fmt.Errorf("learned forms: %w", err)
	}
	stored := map[string]*LearnedType{}
	checked := map[string]time.Time{}
	for _, r := range rows {
		t, err := ParseStored(r)
		if err != nil {
			d.Logger.Warn("unreadable learned form: it is learned again", "portal_type", r.PortalType, "err", err)
			continue
		}
		stored[r.PortalType] = t
		checked[r.PortalType] = r.CheckedAt
	}
	types := d.formTypes(stored)
	d.mu.Lock()
	due := d.formsRequested
	d.formsRequested = false
	d.mu.Unlock()
	now := d.now()
	for _, pt := range types {
		at, ok := checked[pt]
		if !ok || now.Sub(at) >= d.FormsInterval {
			due = true
		}
	}
	if !due {
		return nil
	}
	if mode == ModeBatch {
		err = d.learnReceiver(ctx, types, stored, capa)
	} else {
		err = d.learnStock(ctx, types, stored)
	}
	if err != nil {
		if errors.Is(err, errBudget) || ctx.Err() != nil {
			return err
		}
		d.mu.Lock()
		d.formsRequested = true // the next pass tries again
		d.mu.Unlock()
		d.Logger.Warn("learning ERP5's forms failed; the next pass tries again", "err", shortErr(err))
	}
	return nil
}

// learnReceiver learns every type in one forms request, sending the tags it knows.
func (d *Downlink) learnReceiver(ctx context.Context, types []string, stored map[string]*LearnedType, capa *Capability) error {
	if err := d.gate(ctx); err != nil {
		return err
	}
	encoding := EncodingGzip
	if capa != nil {
		encoding = capa.Encoding()
	}
	req := FormsRequest{Gateway: d.Gateway, View: d.Client.view(), PortalTypes: types, Known: map[string]string{}}
	for _, pt := range types {
		if t := stored[pt]; t != nil && t.Tag != "" {
			req.Known[pt] = t.Tag
		}
	}
	resp, err := d.Client.Forms(ctx, req, encoding)
	if err != nil {
		return err
	}
	now := d.now()
	var out []StoredForm
	for _, a := range resp.Types {
		var t *LearnedType
		if a.Unchanged {
			if t = stored[a.PortalType]; t == nil {
				return fmt.Errorf("erp5 forms: %w: %s unchanged but not known here", ErrBadResponse, a.PortalType)
			}
		} else if t, err = ParseFormsAnswer(a); err != nil {
			return fmt.Errorf("erp5 forms: %w: %v", ErrBadResponse, err)
		}
		t.Tag = a.Tag
		sf, err := t.Stored(now)
		if err != nil {
			return err
		}
		out = append(out, sf)
	}
	return d.storeForms(ctx, out, stored)
}

// storeForms stores learned types and logs those that changed.
func (d *Downlink) storeForms(ctx context.Context, out []StoredForm, stored map[string]*LearnedType) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), applyTimeout)
	defer cancel()
	var changed []string
	for _, sf := range out {
		if old := stored[sf.PortalType]; old == nil || old.Hash() != sf.Hash {
			changed = append(changed, sf.PortalType)
		}
	}
	if err := d.Forms.SetLearnedForms(ctx, out); err != nil {
		return fmt.Errorf("store learned forms: %w", err)
	}
	if len(changed) > 0 {
		d.Logger.Info("learned ERP5's forms", "changed", changed, "types", len(out))
		if d.OnFormsChanged != nil {
			d.OnFormsChanged()
		}
	}
	return nil
}

// learnStock learns each type through the stock interface: a traverse with the form's view
// of one replicated document of the type (else one ERP5's search finds) gives the form and
// the transitions of its state; one more document per other state seen in the replica (at
// most maxStateSamples) gives theirs. The workflow is incomplete: states never seen keep
// what an earlier learning saw, or are unknown.
func (d *Downlink) learnStock(ctx context.Context, types []string, stored map[string]*LearnedType) error {
	now := d.now()
	var out []StoredForm
	for i := 0; i < len(types); i++ {
		pt := types[i]
		t, err := d.learnStockType(ctx, pt, stored[pt])
		if err != nil {
			return fmt.Errorf("learn %s: %w", pt, err)
		}
		if t == nil {
			continue // no document to learn from yet
		}
		for _, e := range t.Form.EmbeddedTypes() {
			if !slices.Contains(types, e) {
				types = append(types, e)
			}
		}
		sf, err := t.Stored(now)
		if err != nil {
			return err
		}
		out = append(out, sf)
	}
	return d.storeForms(ctx, out, stored)
}

func (d *Downlink) learnStockType(ctx context.Context, pt string, old *LearnedType) (*LearnedType, error) {
	stateField := ""
	if old != nil {
		stateField = old.Form.StateField()
	}
	samples, err := d.Forms.StateSamples(ctx, pt, stateField)
	if err != nil {
		return nil, err
	}
	if len(samples) == 0 {
		if err := d.gate(ctx); err != nil {
			return nil, err
		}
		rows, err := d.Client.Search(ctx, SearchOptions{Query: query.Format(&query.Simple{Key: "portal_type", Value: pt}), Limit: []int{0, 1}})
		if err != nil {
			return nil, err
		}
		if len(rows) == 0 || rows[0].ID == "" {
			return nil, nil
		}
		samples = map[string]string{"": rows[0].ID}
	}
	states := sortedStates(samples)
	if err := d.gate(ctx); err != nil {
		return nil, err
	}
	first, err := d.Client.Get(ctx, samples[states[0]])
	if err != nil {
		return nil, err
	}
	t := &LearnedType{PortalType: pt, Form: first.Form}
	sf := t.Form.StateField()
	if sf == "" {
		return t, nil
	}
	if sf != stateField {
		if samples, err = d.Forms.StateSamples(ctx, pt, sf); err != nil {
			return nil, err
		}
		states = sortedStates(samples)
	}
	w := &Workflow{StateField: sf, States: map[string]*WorkflowState{}}
	if old != nil && old.Workflow != nil && old.Workflow.StateField == sf {
		for k, v := range old.Workflow.States {
			w.States[k] = v
		}
	}
	for i, st := range states {
		if i >= maxStateSamples || st == "" {
			break
		}
		doc := first
		if samples[st] != first.ID {
			// The links alone carry the state's transitions.
			if err := d.gate(ctx); err != nil {
				return nil, err
			}
			if doc, err = d.Client.Links(ctx, samples[st]); err != nil {
				return nil, err
			}
		}
		title, _ := doc.States[sf].(string)
		if old := w.States[st]; title == "" && old != nil {
			title = old.Title
		}
		if title == "" {
			title = humanState(st)
		}
		w.States[st] = &WorkflowState{Title: title, Transitions: doc.Transitions}
	}
	if len(w.States) == 0 {
		return t, nil
	}
	t.Workflow = w
	return t, nil
}

// sortedStates returns a samples map's states, sorted.
func sortedStates(samples map[string]string) []string {
	out := make([]string, 0, len(samples))
	for k := range samples {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ParseFormsExport reads the forms line of an ERP5 export (`{"forms": <a forms answer>}`)
// into the rows to store, checked at now (offline seeding: `gateway docs import
// --set-cursors`). Unchanged entries are refused: an export carries every form whole.
func ParseFormsExport(line []byte, now time.Time) ([]StoredForm, error) {
	var in struct {
		Forms *FormsResponse `json:"forms"`
	}
	if err := decodeUseNumber(line, &in); err != nil {
		return nil, fmt.Errorf("forms record: %w", err)
	}
	if in.Forms == nil {
		return nil, fmt.Errorf("forms record: no forms")
	}
	var out []StoredForm
	for _, a := range in.Forms.Types {
		if a.Unchanged || a.PortalType == "" {
			return nil, fmt.Errorf("forms record: an entry without portal_type or marked unchanged")
		}
		t, err := ParseFormsAnswer(a)
		if err != nil {
			return nil, fmt.Errorf("forms record: %w", err)
		}
		sf, err := t.Stored(now)
		if err != nil {
			return nil, err
		}
		out = append(out, sf)
	}
	return out, nil
}

// humanState is a state id as a title when ERP5's is unknown: "auto_planned" → "Auto planned".
func humanState(id string) string {
	s := strings.ReplaceAll(id, "_", " ")
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
