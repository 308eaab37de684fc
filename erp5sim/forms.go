package erp5sim

import (
	"maps"
	"slices"
	"strings"
)

// More Formulator field types the double's forms use (docs/DESIGN.md appendix A).
const (
	ListField                FieldType = "ListField"
	RelationStringField      FieldType = "RelationStringField"
	MultiRelationStringField FieldType = "MultiRelationStringField"
	ListBox                  FieldType = "ListBox"
)

// FormField is one field of a view form as ERP5's HATEOAS script renders it in
// `_embedded._view`, less the document's value.
type FormField struct {
	// ID is the field id (my_title, my_destination_title, listbox).
	ID    string
	Type  FieldType
	Title string
	// Description is the field's help text.
	Description string
	// Editable, Required and Hidden are Formulator's flags, rendered 1/0 (or true/false
	// with Options.BoolFlags).
	Editable, Required, Hidden bool
	// Property is the document property the field reads and Base_edit writes: the base
	// category of a relation field (destination for my_destination_title), the state
	// variable of a translated state field; "" for a ListBox.
	Property string
	// Extra are the type's own keys, rendered as they are: items, date_only, precision,
	// portal_types, catalog_index, column_list, portal_type…
	Extra map[string]any
}

// FormGroup is one group of a form's group_list: left, right, center, bottom.
type FormGroup struct {
	ID     string
	Fields []string
}

// FormDef is a portal type's view form (Person_view): what a traverse with view=view renders
// and what Base_edit validates.
type FormDef struct {
	ID     string // Person_view
	Title  string
	Groups []FormGroup
	Fields map[string]*FormField
}

// clone returns a deep copy of the form, so a runtime change never touches a shared one.
func (f *FormDef) clone() *FormDef {
	c := &FormDef{ID: f.ID, Title: f.Title, Fields: make(map[string]*FormField, len(f.Fields))}
	for _, g := range f.Groups {
		c.Groups = append(c.Groups, FormGroup{ID: g.ID, Fields: slices.Clone(g.Fields)})
	}
	for id, ff := range f.Fields {
		x := *ff
		x.Extra = maps.Clone(ff.Extra)
		c.Fields[id] = &x
	}
	return c
}

// fieldFor returns the form field writing a property, if any.
func (f *FormDef) fieldFor(prop string) *FormField {
	for _, id := range f.order() {
		if ff := f.Fields[id]; ff.Property == prop {
			return ff
		}
	}
	return nil
}

// order lists the form's field ids in group order.
func (f *FormDef) order() []string {
	var out []string
	for _, g := range f.Groups {
		out = append(out, g.Fields...)
	}
	return out
}

// WorkflowState is one state of a workflow: its title and the transitions (user actions)
// available in it, in ERP5's order.
type WorkflowState struct {
	ID          string
	Title       string
	Transitions []string
}

// WorkflowDef is a workflow graph: the state variable, the states and the titles of the
// transitions (ERP5's actions: confirm_action, titled "Confirm Order").
type WorkflowDef struct {
	ID       string // order_workflow
	StateVar string
	States   []WorkflowState
	Titles   map[string]string
}

// state returns the state with id, or nil.
func (w *WorkflowDef) state(id string) *WorkflowState {
	for i := range w.States {
		if w.States[i].ID == id {
			return &w.States[i]
		}
	}
	return nil
}

// transitions derives the transition table (from states → target state) the double applies.
func (w *WorkflowDef) transitions(target map[string]string) map[string]Transition {
	out := map[string]Transition{}
	for _, st := range w.States {
		for _, t := range st.Transitions {
			tr := out[t]
			tr.From = append(tr.From, st.ID)
			tr.To = target[t]
			out[t] = tr
		}
	}
	return out
}

// ERP5's order_workflow (docs/DESIGN.md appendix A): no transition leaves confirmed, there is no
// "deliver"; a cancelled order may be deleted (a site's remove). validation_workflow: which
// transition leaves which state is inferred; delete_action (a site's remove) leaves every
// state but deleted.
var (
	orderWorkflowDef = &WorkflowDef{ID: "order_workflow", StateVar: "simulation_state",
		States: []WorkflowState{
			{ID: "draft", Title: "Draft", Transitions: []string{"plan_action", "order_action", "confirm_action", "cancel_action", "delete_action"}},
			{ID: "planned", Title: "Planned", Transitions: []string{"cancel_action", "confirm_action", "order_action"}},
			{ID: "ordered", Title: "Ordered", Transitions: []string{"cancel_action", "confirm_action"}},
			{ID: "confirmed", Title: "Confirmed"},
			{ID: "cancelled", Title: "Cancelled", Transitions: []string{"delete_action"}},
			{ID: "deleted", Title: "Deleted"},
		},
		Titles: map[string]string{"plan_action": "Plan", "order_action": "Order", "confirm_action": "Confirm",
			"cancel_action": "Cancel", "delete_action": "Delete"},
	}
	orderTargets = map[string]string{"plan_action": "planned", "order_action": "ordered", "confirm_action": "confirmed",
		"cancel_action": "cancelled", "delete_action": "deleted"}
	validationWorkflowDef = &WorkflowDef{ID: "validation_workflow", StateVar: "validation_state",
		States: []WorkflowState{
			{ID: "draft", Title: "Draft", Transitions: []string{"validate_action", "delete_action"}},
			{ID: "validated", Title: "Validated", Transitions: []string{"invalidate_action", "delete_action"}},
			{ID: "invalidated", Title: "Invalidated", Transitions: []string{"validate_action", "delete_action"}},
			{ID: "deleted", Title: "Deleted"},
		},
		Titles: map[string]string{"validate_action": "Validate", "invalidate_action": "Invalidate", "delete_action": "Delete"},
	}
	validationTargets = map[string]string{"validate_action": "validated", "invalidate_action": "invalidated", "delete_action": "deleted"}
)

// field constructors for the forms below.
type fopt func(*FormField)

func fld(id string, t FieldType, title string, opts ...fopt) *FormField {
	f := &FormField{ID: id, Type: t, Title: title, Editable: true, Property: strings.TrimPrefix(id, "my_"), Extra: map[string]any{}}
	for _, o := range opts {
		o(f)
	}
	return f
}

func readOnly(f *FormField)         { f.Editable = false }
func required(f *FormField)         { f.Required = true }
func help(s string) fopt            { return func(f *FormField) { f.Description = s } }
func extra(k string, v any) fopt    { return func(f *FormField) { f.Extra[k] = v } }
func items(pairs ...[2]string) fopt { return extra("items", itemList(pairs)) }
func dateOnly(f *FormField)         { f.Extra["date_only"] = 1 }
func precision(n int) fopt          { return extra("precision", n) }
func relation(bc string, pts ...string) fopt {
	return func(f *FormField) {
		f.Property = bc
		f.Extra["portal_types"] = anyList(pts)
		f.Extra["catalog_index"] = "title"
		f.Extra["allow_jump"] = 1
		f.Extra["allow_creation"] = 0
	}
}
func stateField(variable string) fopt {
	return func(f *FormField) { f.Property = variable; f.Editable = false }
}

func itemList(pairs [][2]string) []any {
	out := []any{[]any{"", ""}}
	for _, p := range pairs {
		out = append(out, []any{p[0], p[1]})
	}
	return out
}

func anyList(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func pairs(p ...[2]string) []any {
	out := make([]any, len(p))
	for i, x := range p {
		out[i] = []any{x[0], x[1]}
	}
	return out
}

// QuantityUnits are the Product form's quantity units ([title, value]): the demo data uses
// the values.
// ERP5's quantity units are category paths.
var QuantityUnits = [][2]string{{"Piece", "unit/piece"}, {"Kilogram", "mass/kilogram"}, {"Litre", "volume/liter"}, {"Metre", "length/meter"}}

// Currencies are the Sale Order form's currencies ([title, value]).
var Currencies = [][2]string{{"CFA Franc BCEAO", "currency_module/XOF"}, {"Euro", "currency_module/EUR"}, {"US Dollar", "currency_module/USD"}}

// ProductLines are the Product form's product lines ([title, value]).
var ProductLines = [][2]string{{"Mechanics", "mechanics"}, {"Electricity", "electricity"}, {"Consumables", "consumables"},
	{"Construction", "construction"}, {"Medical", "medical"}}

// Roles are the Organisation form's roles ([title, value]).
var Roles = [][2]string{{"Client", "client"}, {"Supplier", "supplier"}, {"Internal", "internal"}}

func form(id, title string, groups [][]any) *FormDef {
	f := &FormDef{ID: id, Title: title, Fields: map[string]*FormField{}}
	for _, g := range groups {
		grp := FormGroup{ID: g[0].(string)}
		for _, x := range g[1:] {
			ff := x.(*FormField)
			grp.Fields = append(grp.Fields, ff.ID)
			f.Fields[ff.ID] = ff
		}
		f.Groups = append(f.Groups, grp)
	}
	return f
}

// defaultForms returns the double's view forms, modelled on ERP5's Person_view,
// Organisation_view, Product_view, SaleOrder_view and SaleOrderLine_view.
func defaultForms() map[string]*FormDef {
	return map[string]*FormDef{
		"Person": form("Person_view", "Person", [][]any{
			{"left",
				fld("my_first_name", StringField, "First Name"),
				fld("my_last_name", StringField, "Last Name"),
				fld("my_title", StringField, "Title", required, help("The name shown in lists: usually first and last name.")),
				fld("my_reference", StringField, "Reference", help("A unique code for this person.")),
				fld("my_subordination_title", RelationStringField, "Organisation", relation("subordination", "Organisation"),
					help("The organisation this person works for.")),
			},
			{"right",
				fld("my_default_email_text", EmailField, "Email"),
				fld("my_default_telephone_text", StringField, "Telephone"),
				fld("my_function", StringField, "Function"),
				fld("my_start_date", DateTimeField, "Start Date", dateOnly, help("When this person started working with us.")),
				fld("my_translated_validation_state", StringField, "State", stateField("validation_state")),
			},
			{"center", fld("my_description", TextAreaField, "Description")},
		}),
		"Organisation": form("Organisation_view", "Organisation", [][]any{
			{"left",
				fld("my_title", StringField, "Organisation Name", required),
				fld("my_corporate_name", StringField, "Corporate Name"),
				fld("my_reference", StringField, "Reference"),
				fld("my_role", ListField, "Role", items(Roles...)),
				fld("my_default_email_text", EmailField, "Email"),
				fld("my_default_telephone_text", StringField, "Telephone"),
			},
			{"right",
				fld("my_default_address_street_address", TextAreaField, "Address"),
				fld("my_default_address_zip_code", StringField, "Postal Code"),
				fld("my_default_address_city", StringField, "City"),
				fld("my_translated_validation_state", StringField, "State", stateField("validation_state")),
			},
			{"center", fld("my_description", TextAreaField, "Description")},
		}),
		"Product": form("Product_view", "Product", [][]any{
			{"left",
				fld("my_title", StringField, "Title", required),
				fld("my_reference", StringField, "Reference"),
				fld("my_ean13_code", StringField, "EAN13 Code", help("The 13 digits of the bar code.")),
				fld("my_product_line", ListField, "Product Line", items(ProductLines...)),
			},
			{"right",
				fld("my_quantity_unit", ListField, "Quantity Unit", items(QuantityUnits...)),
				fld("my_base_price", FloatField, "Base Price", precision(2), extra("input_style", "-1234.5")),
				fld("my_weight", FloatField, "Weight (kg)", precision(2), extra("input_style", "-1234.5")),
				fld("my_translated_validation_state", StringField, "State", stateField("validation_state")),
			},
			{"center", fld("my_description", TextAreaField, "Description")},
		}),
		"Sale Order": form("SaleOrder_view", "Sale Order", [][]any{
			{"left",
				fld("my_title", StringField, "Title"),
				fld("my_reference", StringField, "Reference"),
				fld("my_destination_title", RelationStringField, "Client", relation("destination", "Organisation", "Person"),
					help("Who receives the goods.")),
				fld("my_destination_section_title", RelationStringField, "Client Section", relation("destination_section", "Organisation")),
				fld("my_source_title", RelationStringField, "Supplier", relation("source", "Organisation")),
				fld("my_source_section_title", RelationStringField, "Supplier Section", relation("source_section", "Organisation")),
			},
			{"right",
				fld("my_start_date", DateTimeField, "Order Date", dateOnly),
				fld("my_stop_date", DateTimeField, "Delivery Date", dateOnly),
				fld("my_price_currency", ListField, "Currency", items(Currencies...)),
				fld("my_translated_simulation_state", StringField, "Order State", stateField("simulation_state")),
			},
			{"center", fld("my_comment", TextAreaField, "Comment")},
			{"bottom", fld("listbox", ListBox, "Lines", func(f *FormField) {
				f.Property = ""
				f.Editable = false
				cols := pairs([2]string{"int_index", "Index"}, [2]string{"resource_title", "Product"}, [2]string{"quantity", "Quantity"},
					[2]string{"price", "Price"}, [2]string{"total_price", "Total"})
				f.Extra["column_list"] = cols
				f.Extra["all_column_list"] = cols
				f.Extra["portal_type"] = pairs([2]string{"Sale Order Line", "Sale Order Line"})
				f.Extra["list_method"] = "objectValues"
				f.Extra["lines"] = 50
				f.Extra["show_anchor"] = 1
			})},
		}),
		"Sale Order Line": form("SaleOrderLine_view", "Sale Order Line", [][]any{
			{"left",
				fld("my_resource_title", RelationStringField, "Product", relation("resource", "Product"), required),
				fld("my_quantity", FloatField, "Quantity", precision(2), extra("input_style", "-1234.5")),
				fld("my_price", FloatField, "Price", precision(2), extra("input_style", "-1234.5")),
				fld("my_total_price", FloatField, "Total Price", precision(2), readOnly, func(f *FormField) { f.Property = "total_price" }),
			},
			{"right",
				fld("my_title", StringField, "Title"),
				fld("my_int_index", IntegerField, "Index"),
				fld("my_translated_simulation_state", StringField, "State", stateField("simulation_state")),
			},
			{"center", fld("my_description", TextAreaField, "Description")},
		}),
	}
}

// defaultWorkflows returns the workflow of each portal type with a form.
func defaultWorkflows() map[string]*WorkflowDef {
	return map[string]*WorkflowDef{
		"Person": validationWorkflowDef, "Organisation": validationWorkflowDef, "Product": validationWorkflowDef,
		"Sale Order": orderWorkflowDef,
	}
}
