package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"sitesync.example/gateway/query"
)

// DefaultView is the traverse view every ERP5 portal type has: its object_view action, whose
// form is the type's main form (Person_view). jio_view exists only where OfficeJS apps added
// it (docs/DESIGN.md appendix A).
const DefaultView = "view"

// Document is an ERP5 document as the stock interface shows it: its editable form turned
// into properties (docs/DESIGN.md appendix A). Unlike jIO, falsy values (0, false, "") are kept.
type Document struct {
	ID                string
	PortalType        string
	ParentRelativeURL string
	// Fields maps a property (the field id without my_ or your_; a relation field's base
	// category) to its value: a string, a json.Number, a bool, a []any, or nil. A relation
	// holds the related documents' relative URLs.
	Fields map[string]any
	// FormID is the form's id (form_id), sent back with a put.
	FormID string
	// PutURL is where a put posts; "" when the user may not modify the document.
	PutURL string
	// Keys maps a property to its form field's key (field_my_title).
	Keys map[string]string
	// Types maps a property to its field type (StringField…).
	Types map[string]string
	// Specs maps a property to what a put needs to know of its field.
	Specs map[string]FieldSpec
	// Form is the view form as the site serves it (nil when the answer has no view), and
	// Transitions the document's `_links.action_workflow` in its current state.
	Form        *Form
	Transitions []WorkflowTransition
	// States maps a workflow state variable to what the form's read-only state field shows
	// (my_translated_simulation_state: the state's title).
	States map[string]any
}

// FieldSpec is what a put needs to know of an editable form field.
type FieldSpec struct {
	// Key is the field's key (field_my_title); Type its field type.
	Key, Type string
	// Index is a relation field's catalog index (title): the text Base_edit searches.
	Index string
	// DateOnly and TimeZone are a DateTimeField's date_only and timezone_style.
	DateOnly, TimeZone bool
	// Multiple marks a field whose value is a list.
	Multiple bool
}

// FieldTypes are the form field types turned into properties. jIO takes the first five; the
// others carry values a site's forms edit too (dates, check boxes, lists, relations).
var FieldTypes = map[string]bool{
	"StringField": true, "EmailField": true, "IntegerField": true, "FloatField": true, "TextAreaField": true,
	"DateTimeField": true, "CheckBoxField": true, "ListField": true, "RadioField": true, "LinesField": true,
	"MultiListField": true, "MultiCheckBoxField": true, "LinkField": true, "PasswordField": false,
	"RelationStringField": true, "MultiRelationStringField": true, "StringLinkField": true,
}

// view returns the traverse view the client asks for.
func (c *Client) view() string {
	if c.View != "" {
		return c.View
	}
	return DefaultView
}

// Get traverses id with the configured view (DefaultView unless Client.View names another)
// and returns the document. When a named view is missing for the document (ERP5 answers
// 404), it is traversed again with DefaultView. A missing document is an *HTTPError with
// Status 404.
func (c *Client) Get(ctx context.Context, id string) (*Document, error) {
	view := c.view()
	doc, err := c.traverseDoc(ctx, id, view)
	var he *HTTPError
	if view != DefaultView && errors.As(err, &he) && he.Status == http.StatusNotFound {
		if doc, err2 := c.traverseDoc(ctx, id, DefaultView); err2 == nil {
			c.Logger.Warn("the configured traverse view is missing: using view", "view", view, "id", id)
			return doc, nil
		}
	}
	return doc, err
}

func (c *Client) traverseDoc(ctx context.Context, id, view string) (*Document, error) {
	root, err := c.Root(ctx)
	if err != nil {
		return nil, err
	}
	vars := map[string]any{"relative_url": id}
	if view != "" {
		vars["view"] = view
	}
	u, err := c.expand(root.Traverse, vars)
	if err != nil {
		return nil, err
	}
	ex, err := c.do(ctx, request{method: http.MethodGet, url: u, accept: halJSON, expect: 8192})
	if err != nil {
		return nil, fmt.Errorf("erp5 get %s: %w", id, err)
	}
	doc, err := ParseDocument(id, ex.body)
	if err != nil {
		return nil, fmt.Errorf("erp5 get %s: %w", id, errors.Join(ErrBadResponse, err))
	}
	if doc.PutURL != "" {
		if doc.PutURL, err = c.resolve(doc.PutURL); err != nil {
			return nil, err
		}
		c.learn(doc)
	}
	return doc, nil
}

// Links traverses id without a view: the document's links only, among them the workflow
// transitions of its current state (Document.Transitions), for a fraction of a form's bytes.
func (c *Client) Links(ctx context.Context, id string) (*Document, error) {
	return c.traverseDoc(ctx, id, "")
}

// viewField is a rendered form field's keys that ParseDocument reads.
type viewField struct {
	Key                      string `json:"key"`
	Default                  any    `json:"default"`
	Editable                 any    `json:"editable"`
	Type                     string `json:"type"`
	CatalogIndex             string `json:"catalog_index"`
	BaseCategory             string `json:"base_category"`
	DateOnly                 any    `json:"date_only"`
	TimezoneStyle            any    `json:"timezone_style"`
	RelationItemRelativeURLs []any  `json:"relation_item_relative_url"`
}

// ParseDocument turns a traverse response into a Document: each editable my_ field and each
// your_ field of a known type becomes a property valued by its default (a relation field:
// its base category valued by the related documents' relative URLs), plus portal_type and
// parent_relative_url from the links. Flags are read as ERP5 writes them (1/0) or as jIO's
// fixtures do (true/false).
func ParseDocument(id string, body []byte) (*Document, error) {
	var raw struct {
		Links    halLinks `json:"_links"`
		Embedded struct {
			View map[string]json.RawMessage `json:"_view"`
		} `json:"_embedded"`
	}
	if err := decodeUseNumber(body, &raw); err != nil {
		return nil, err
	}
	doc := &Document{
		ID:                id,
		PortalType:        strings.TrimPrefix(StripURN(raw.Links.get("type").Href), "portal_types/"),
		ParentRelativeURL: StripURN(raw.Links.get("parent").Href),
		Fields:            map[string]any{},
		Keys:              map[string]string{},
		Types:             map[string]string{},
		Specs:             map[string]FieldSpec{},
		States:            map[string]any{},
	}
	var err error
	if doc.Transitions, err = ParseActionWorkflow(raw.Links["action_workflow"]); err != nil {
		return nil, err
	}
	if len(raw.Embedded.View) > 0 {
		if doc.Form, err = ParseViewForm(raw.Embedded.View); err != nil {
			return nil, err
		}
	}
	for name, msg := range raw.Embedded.View {
		switch name {
		case "_actions":
			var a halLinks
			if err := json.Unmarshal(msg, &a); err == nil {
				doc.PutURL = a.get("put").Href
			}
			continue
		case "form_id":
			var f struct {
				Default any `json:"default"`
			}
			if err := json.Unmarshal(msg, &f); err == nil {
				if s, ok := f.Default.(string); ok {
					doc.FormID = s
				}
			}
			continue
		}
		var f viewField
		if err := decodeUseNumber(msg, &f); err != nil || !FieldTypes[f.Type] {
			continue
		}
		var prop string
		switch {
		case strings.HasPrefix(name, "my_") && !Flag(f.Editable):
			if p := FieldProperty(name, f.Type, nil); strings.HasSuffix(p, "_state") {
				doc.States[p] = f.Default
			}
			continue
		case strings.HasPrefix(name, "my_"):
			prop = FieldProperty(name, f.Type, map[string]any{"catalog_index": f.CatalogIndex, "base_category": f.BaseCategory})
		case strings.HasPrefix(name, "your_"):
			prop = strings.TrimPrefix(name, "your_")
		default:
			continue
		}
		value := f.Default
		spec := FieldSpec{Key: f.Key, Type: f.Type, Multiple: multiTypes[f.Type]}
		switch {
		case relationTypes[f.Type]:
			spec.Index = f.CatalogIndex
			if spec.Index == "" {
				spec.Index = "title"
			}
			var rels []any
			for _, r := range f.RelationItemRelativeURLs {
				if s, ok := r.(string); ok && s != "" {
					rels = append(rels, s)
				}
			}
			switch {
			case spec.Multiple:
				value = rels
				if rels == nil {
					value = []any{}
				}
			case len(rels) > 0:
				value = rels[0]
			default:
				value = nil
			}
		case f.Type == "DateTimeField":
			spec.DateOnly, spec.TimeZone = Flag(f.DateOnly), Flag(f.TimezoneStyle)
		}
		doc.Fields[prop] = value
		doc.Keys[prop] = f.Key
		doc.Types[prop] = f.Type
		doc.Specs[prop] = spec
	}
	if doc.PortalType != "" {
		doc.Fields["portal_type"] = doc.PortalType
	}
	if doc.ParentRelativeURL != "" {
		doc.Fields["parent_relative_url"] = doc.ParentRelativeURL
	}
	return doc, nil
}

// learnedForm is what one traverse taught about a portal type's form, and about the form of
// the documents at the same place (same module, same depth: an outbox put does not carry its
// portal type): the put URL with the relative URL cut out (prefix + id + suffix), the form id
// and the fields. A put of another such document skips its traverse; a 404, 403 or 400
// on the learned URL (wrong URL, wrong form) falls back to one.
type learnedForm struct {
	prefix, suffix string
	formID         string
	specs          map[string]FieldSpec
}

func (c *Client) learn(doc *Document) {
	if doc.PortalType == "" || doc.FormID == "" {
		return
	}
	i := strings.Index(doc.PutURL, "/"+doc.ID+"/")
	if i < 0 {
		return
	}
	f := &learnedForm{
		prefix: doc.PutURL[:i+1],
		suffix: doc.PutURL[i+1+len(doc.ID):],
		formID: doc.FormID,
		specs:  doc.Specs,
	}
	c.mu.Lock()
	c.forms["type:"+doc.PortalType] = f
	c.forms["place:"+place(doc.ID)] = f
	c.mu.Unlock()
}

// learned returns the form learned for portalType, else for documents placed like id.
func (c *Client) learned(id, portalType string) *learnedForm {
	c.mu.Lock()
	defer c.mu.Unlock()
	if portalType != "" {
		if f := c.forms["type:"+portalType]; f != nil {
			return f
		}
	}
	return c.forms["place:"+place(id)]
}

// place is where a document lives, for learned forms: its module and its depth
// ("sale_order_module/*/*" for a line of an order).
func place(id string) string {
	first, _, _ := strings.Cut(id, "/")
	return first + "/" + strconv.Itoa(strings.Count(id, "/"))
}

// Related is what a stock put needs of a related document: the text of the relation field's
// catalog index (its title) and its catalog uid.
type Related struct {
	Text, UID string
}

// Put edits the document id: a form POST of fields to its put URL (docs/DESIGN.md appendix A). A form
// learned from an earlier traverse of the same portal type (when given) or of a document at
// the same place saves the traverse; a 404, 403 or 400 on the learned URL falls back to one.
// A nil value clears the field (sent as ""). Dates go as the field's subfields; a relation
// (the related documents' relative URLs) as the related document's text and, in the
// relation subfield, its uid, so that Base_edit sets exactly that document without a
// catalog search (docs/DESIGN.md appendix A).
// It returns the document's id afterwards: a 201 with X-Location means the edit renamed it.
// A field the form does not let the user edit is ErrNotEditable.
func (c *Client) Put(ctx context.Context, id, portalType string, fields map[string]any) (string, error) {
	if err := c.init(); err != nil {
		return "", err
	}
	if f := c.learned(id, portalType); f != nil {
		form, missing, err := c.buildForm(ctx, f.formID, f.specs, fields)
		if err != nil {
			return "", fmt.Errorf("erp5 put %s: %w", id, err)
		}
		if len(missing) == 0 {
			newID, err := c.postForm(ctx, f.prefix+id+f.suffix, form, id)
			var he *HTTPError
			if !errors.As(err, &he) || (he.Status != http.StatusNotFound && he.Status != http.StatusForbidden &&
				he.Status != http.StatusBadRequest) {
				return newID, err
			}
			// The learned URL or form is wrong for this document (ERP5 applied nothing): ask
			// the document itself.
		}
	}
	doc, err := c.Get(ctx, id)
	if err != nil {
		return "", err
	}
	if doc.PutURL == "" {
		return "", fmt.Errorf("erp5 put %s: %w: the document offers no put action", id, ErrNotEditable)
	}
	form, missing, err := c.buildForm(ctx, doc.FormID, doc.Specs, fields)
	if err != nil {
		return "", fmt.Errorf("erp5 put %s: %w", id, err)
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("erp5 put %s: %w: field %s is not on form %s", id, ErrNotEditable, strings.Join(missing, ", "), doc.FormID)
	}
	return c.postForm(ctx, doc.PutURL, form, id)
}

// buildForm returns the form values of a put, and the fields the form has no editable field
// for (sorted).
func (c *Client) buildForm(ctx context.Context, formID string, specs map[string]FieldSpec, fields map[string]any) (url.Values, []string, error) {
	form := url.Values{"form_id": {formID}}
	var missing []string
	for prop, v := range fields {
		if prop == "portal_type" || prop == "parent_relative_url" {
			continue
		}
		spec, ok := specs[prop]
		if !ok {
			missing = append(missing, prop)
			continue
		}
		switch {
		case spec.Type == "DateTimeField":
			if err := dateSubfields(form, spec, v); err != nil {
				return nil, nil, fmt.Errorf("%w: %s: %v", ErrNotEditable, prop, err)
			}
		case relationTypes[spec.Type]:
			if err := c.relationValues(ctx, form, spec, v); err != nil {
				return nil, nil, err
			}
		default:
			form[spec.Key] = FormValues(v)
		}
	}
	sort.Strings(missing)
	return form, missing, nil
}

// dateSubfields renders a date as a DateTimeField's subfields (subfield_<key>_year, month,
// day, hour, minute): ERP5's DateTimeField reads these, not one text value. A date-only
// field takes the calendar day as written (its own UTC offset); a date and time is sent in
// UTC, with timezone GMT when the field shows a time zone. nil or "" clears the date.
func dateSubfields(form url.Values, spec FieldSpec, v any) error {
	sub := func(p, val string) { form["subfield_"+spec.Key+"_"+p] = []string{val} }
	s, _ := v.(string)
	if v == nil || strings.TrimSpace(s) == "" {
		for _, p := range []string{"year", "month", "day"} {
			sub(p, "")
		}
		if !spec.DateOnly {
			sub("hour", "")
			sub("minute", "")
		}
		return nil
	}
	if _, ok := v.(string); !ok {
		return fmt.Errorf("a date is text, got %T", v)
	}
	t, ok := parseDateKeepZone(strings.TrimSpace(s))
	if !ok {
		return fmt.Errorf("%q is not a date", s)
	}
	if !spec.DateOnly {
		t = t.UTC()
	}
	sub("year", strconv.Itoa(t.Year()))
	sub("month", strconv.Itoa(int(t.Month())))
	sub("day", strconv.Itoa(t.Day()))
	if !spec.DateOnly {
		sub("hour", strconv.Itoa(t.Hour()))
		sub("minute", strconv.Itoa(t.Minute()))
		if spec.TimeZone {
			sub("timezone", "GMT")
		}
	}
	return nil
}

// parseDateKeepZone reads a date as the site writes it (RFC 822 as ERP5 does, RFC 3339, or
// ISO 8601 as the query language reads it), keeping its UTC offset.
func parseDateKeepZone(s string) (time.Time, bool) {
	for _, layout := range []string{rfc822, time.RFC1123, time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	if t, _, ok := query.ParseDate(s); ok {
		return t, true
	}
	return time.Time{}, false
}

// relationValues renders a relation (the related documents' relative URLs) for Base_edit:
// the related document's catalog-index text under the field's key and its uid in the
// relation subfield. The text and uid come from Client.Related (the replica), else from a
// search at ERP5. An empty relation clears it.
func (c *Client) relationValues(ctx context.Context, form url.Values, spec FieldSpec, v any) error {
	var rels []string
	switch x := v.(type) {
	case nil:
	case string:
		if x != "" {
			rels = []string{x}
		}
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok && s != "" {
				rels = append(rels, s)
			}
		}
	default:
		return fmt.Errorf("%w: relation %s: want a relative URL, got %T", ErrNotEditable, spec.Key, v)
	}
	if len(rels) == 0 {
		form[spec.Key] = []string{""}
		return nil
	}
	for _, rel := range rels {
		r, err := c.related(ctx, rel, spec.Index)
		if err != nil {
			return err
		}
		form.Add(spec.Key, r.Text)
		form.Add("subfield_"+spec.Key+"_relation", r.UID)
	}
	return nil
}

// related returns the text and uid of a related document: Client.Related's answer when it
// knows both, else a search at ERP5 by relative URL.
func (c *Client) related(ctx context.Context, rel, index string) (Related, error) {
	if c.Related != nil {
		if r, ok := c.Related(ctx, rel, index); ok && r.UID != "" {
			return r, nil
		}
	}
	rows, err := c.Search(ctx, SearchOptions{
		Query:      query.Format(&query.Simple{Key: "relative_url", Value: rel}),
		SelectList: []string{"uid", index},
		Limit:      []int{0, 2},
	})
	if err != nil {
		return Related{}, err
	}
	for _, row := range rows {
		if row.ID != rel {
			continue
		}
		r := Related{UID: scalarText(row.Fields["uid"]), Text: scalarText(row.Fields[index])}
		if r.UID != "" {
			return r, nil
		}
	}
	return Related{}, fmt.Errorf("erp5: %w: the related document %s is not in ERP5's catalog", ErrNotEditable, rel)
}

// scalarText renders a search value as text ("" for null).
func scalarText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	}
	return fmt.Sprint(v)
}

// FormValues renders a JSON value as form values for Base_edit: strings as they are, numbers
// as written, true as "1" and false as "" (Formulator's check box reads any non-empty value
// as checked), nil as "" (a cleared field, docs/DESIGN.md §7), lists as repeated values, objects as
// JSON.
func FormValues(v any) []string {
	switch x := v.(type) {
	case nil:
		return []string{""}
	case string:
		return []string{x}
	case json.Number:
		return []string{x.String()}
	case float64:
		return []string{strconv.FormatFloat(x, 'f', -1, 64)}
	case int:
		return []string{strconv.Itoa(x)}
	case int64:
		return []string{strconv.FormatInt(x, 10)}
	case bool:
		if x {
			return []string{"1"}
		}
		return []string{""}
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			out = append(out, FormValues(e)...)
		}
		return out
	case []string:
		return x
	}
	b, _ := json.Marshal(v)
	return []string{string(b)}
}
