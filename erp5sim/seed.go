package erp5sim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unicode"
)

var (
	firstNames = []string{"Amina", "Jean", "Fatou", "Pierre", "Aïcha", "Luc", "Mariam", "Olivier", "Kofi", "Chloé",
		"Moussa", "Élodie", "Ibrahim", "Sophie", "Youssef", "Hélène", "Ousmane", "Nadia", "Thomas", "Awa",
		"Karim", "Julie", "Seydou", "Camille", "Bakary", "Léa", "Mamadou", "Inès", "François", "Zeynab"}
	lastNames = []string{"Diallo", "Martin", "Traoré", "Dubois", "Koné", "Bernard", "Ndiaye", "Durand", "Camara", "Lefèvre",
		"Sow", "Moreau", "Keita", "Laurent", "Cissé", "Simon", "Ba", "Michel", "Touré", "Garcia",
		"Diop", "Roux", "Sylla", "Fournier", "Coulibaly", "Girard", "Barry", "Bonnet", "Sangaré", "Mercier"}
	cities     = []string{"Bamako", "Dakar", "Niamey", "Agadez", "Tombouctou", "Gao", "Mopti", "Ségou", "Kayes", "Zinder", "Tamanrasset", "Nouakchott"}
	orgWords   = []string{"Sahel", "Niger", "Delta", "Atlas", "Baobab", "Savane", "Oasis", "Horizon", "Caravane", "Dune", "Fleuve", "Étoile"}
	orgKinds   = []string{"Logistique", "Transports", "Distribution", "Agro", "Minerais", "Services", "Énergie", "Matériaux", "Santé", "Télécom"}
	functions  = []string{"Chef de site", "Magasinier", "Comptable", "Technicien", "Chauffeur", "Acheteur", "Infirmier", "Mécanicien", "Responsable logistique", "Agent de saisie"}
	prodNouns  = []string{"Pompe", "Câble", "Filtre", "Pneu", "Batterie", "Panneau solaire", "Générateur", "Tuyau", "Courroie", "Moteur", "Vanne", "Roulement", "Sac de ciment", "Bidon d'huile", "Kit de réparation"}
	prodAdjs   = []string{"renforcé", "standard", "industriel", "compact", "haute pression", "tout-terrain", "12 V", "24 V", "inox", "galvanisé"}
	prodLines  = []string{"mechanics", "electricity", "consumables", "construction", "medical"}
	units      = []string{"unit/piece", "mass/kilogram", "volume/liter", "length/meter"} // QuantityUnits' values
	currencies = []string{"currency_module/XOF", "currency_module/EUR", "currency_module/USD"}
	words      = strings.Fields("livraison urgente vérifier le stock avant expédition contrôle qualité effectué pièce défectueuse remplacée sous garantie client prévenu par téléphone camion en route retard dû à la piste inondée commande groupée avec le site voisin prix négocié remise accordée inventaire mensuel réception partielle reliquat à suivre")
)

func pick[T any](r *rand.Rand, list []T) T { return list[r.IntN(len(list))] }

func sentence(r *rand.Rand, min, max int) string {
	n := min + r.IntN(max-min+1)
	ws := make([]string, n)
	for i := range ws {
		ws[i] = pick(r, words)
	}
	s := []rune(strings.Join(ws, " "))
	s[0] = unicode.ToUpper(s[0])
	return string(s) + "."
}

func phone(r *rand.Rand) string {
	return fmt.Sprintf("+223 %02d %02d %02d %02d", 60+r.IntN(40), r.IntN(100), r.IntN(100), r.IntN(100))
}

func slug(s string) string {
	repl := strings.NewReplacer("é", "e", "è", "e", "ï", "i", "É", "e", "ç", "c", " ", ".", "'", "")
	return strings.ToLower(repl.Replace(s))
}

func num(f float64) json.Number { return json.Number(formatFloat(f)) }

// Generate returns about n realistic documents — organisations, people, products, sale
// orders and their lines, in those proportions — built from a seeded random source: the same
// (seed, n, ref) always gives the same documents. Dates fall in the year before ref. Ids
// are ERP5-like: person_module/1, sale_order_module/3/2.
func Generate(seed int64, n int, ref time.Time) []*Document {
	r := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	ref = ref.UTC().Truncate(time.Microsecond)
	var out []*Document
	dates := func() (time.Time, time.Time) {
		c := ref.Add(-time.Duration(r.Int64N(int64(365 * 24 * time.Hour))))
		m := c.Add(time.Duration(r.Int64N(int64(ref.Sub(c)) + 1)))
		return c.Truncate(time.Microsecond), m.Truncate(time.Microsecond)
	}
	add := func(id, pt string, props map[string]any) {
		c, m := dates()
		out = append(out, &Document{ID: id, PortalType: pt, Properties: props, CreationDate: c, ModificationDate: m})
	}
	state := func() string {
		switch x := r.IntN(20); {
		case x < 16:
			return "validated"
		case x < 19:
			return "draft"
		}
		return "invalidated"
	}
	nOrg := max(1, n*8/100)
	nProd := max(1, n*15/100)
	nPerson := max(1, n*40/100)
	for i := 1; i <= nOrg; i++ {
		name := pick(r, orgWords) + " " + pick(r, orgKinds)
		city := pick(r, cities)
		add("organisation_module/"+strconv.Itoa(i), "Organisation", map[string]any{
			"title": name, "corporate_name": name + " SARL", "reference": fmt.Sprintf("ORG-%04d", i),
			"default_email_text":             "contact@" + slug(strings.Fields(name)[0]) + ".example",
			"default_telephone_text":         phone(r),
			"default_address_street_address": fmt.Sprintf("%d rue %s", 1+r.IntN(200), pick(r, lastNames)),
			"default_address_zip_code":       fmt.Sprintf("BP %d", 100+r.IntN(9000)),
			"default_address_city":           city,
			"role":                           pick(r, []string{"client", "supplier", "internal"}),
			"validation_state":               state(),
		})
	}
	for i := 1; i <= nPerson; i++ {
		first, last := pick(r, firstNames), pick(r, lastNames)
		props := map[string]any{
			"title": first + " " + last, "first_name": first, "last_name": last,
			"reference":              fmt.Sprintf("P%05d", i),
			"default_email_text":     slug(first) + "." + slug(last) + "@example.org",
			"default_telephone_text": phone(r),
			"function":               pick(r, functions),
			"subordination":          "organisation_module/" + strconv.Itoa(1+r.IntN(nOrg)),
			"validation_state":       state(),
		}
		if r.IntN(3) == 0 {
			props["description"] = sentence(r, 5, 25)
		}
		if r.IntN(2) == 0 {
			props["start_date"] = formatRFC822(ref.Add(-time.Duration(r.Int64N(int64(3000 * 24 * time.Hour)))).Truncate(time.Second))
		}
		add("person_module/"+strconv.Itoa(i), "Person", props)
	}
	for i := 1; i <= nProd; i++ {
		title := pick(r, prodNouns) + " " + pick(r, prodAdjs)
		add("product_module/"+strconv.Itoa(i), "Product", map[string]any{
			"title": title, "reference": fmt.Sprintf("PRD-%05d", i),
			"ean13_code":       fmt.Sprintf("%013d", r.Int64N(1e13)),
			"product_line":     pick(r, prodLines),
			"quantity_unit":    pick(r, units),
			"base_price":       num(float64(100+r.IntN(500_000)) / 100),
			"weight":           num(float64(1+r.IntN(50_000)) / 100),
			"description":      sentence(r, 4, 16),
			"validation_state": state(),
		})
	}
	orderStates := []string{"draft", "planned", "ordered", "confirmed", "confirmed", "confirmed", "cancelled"}
	for o := 1; len(out) < n; o++ {
		st := pick(r, orderStates)
		c, _ := dates()
		add("sale_order_module/"+strconv.Itoa(o), "Sale Order", map[string]any{
			"title":               fmt.Sprintf("Commande %s %d", pick(r, cities), o),
			"reference":           fmt.Sprintf("SO-%06d", o),
			"source":              "organisation_module/" + strconv.Itoa(1+r.IntN(nOrg)),
			"source_section":      "organisation_module/1",
			"destination":         "organisation_module/" + strconv.Itoa(1+r.IntN(nOrg)),
			"destination_section": "organisation_module/" + strconv.Itoa(1+r.IntN(nOrg)),
			"start_date":          formatRFC822(c.Truncate(time.Second)),
			"stop_date":           formatRFC822(c.Add(time.Duration(1+r.IntN(30)) * 24 * time.Hour).Truncate(time.Second)),
			"price_currency":      pick(r, currencies),
			"simulation_state":    st,
		})
		// Every order has at least one line, stored under it.
		lines := 1 + r.IntN(5)
		for l := 1; l <= lines && (l == 1 || len(out) < n); l++ {
			p := 1 + r.IntN(nProd)
			add(fmt.Sprintf("sale_order_module/%d/%d", o, l), "Sale Order Line", map[string]any{
				"title":            fmt.Sprintf("Ligne %d", l),
				"resource":         "product_module/" + strconv.Itoa(p),
				"quantity":         num(float64(1 + r.IntN(200))),
				"price":            num(float64(100+r.IntN(200_000)) / 100),
				"int_index":        json.Number(strconv.Itoa(l)),
				"simulation_state": st,
			})
		}
	}
	return out
}

// Edit is one write of an edit corpus, as a site's gateway would queue it.
type Edit struct {
	Op                string // post, put or action
	ID                string // the target; for a post, a local id the gateway made up
	PortalType        string
	ParentRelativeURL string
	Fields            map[string]any // changed fields only
	Base              map[string]any // each changed field's value before the edit (null if absent)
	Transition        string
}

// CorpusDocs and CorpusRef define the data set a corpus edits:
// Generate(seed, CorpusDocs, CorpusRef).
const CorpusDocs = 2000

// CorpusRef is the reference time of the data set a corpus edits.
var CorpusRef = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Corpus returns n ERP5-like edits, seeded: about 70% puts of one to three fields (phone
// numbers, emails, quantities, prices, dates, descriptions), 20% posts (people and sale
// order lines) and 10% workflow actions. They apply, in order and without conflicts, to
// Generate(seed, CorpusDocs, CorpusRef); Base holds the value each edit replaces.
func Corpus(seed int64, n int) []Edit {
	docs := Generate(seed, CorpusDocs, CorpusRef)
	r := rand.New(rand.NewPCG(uint64(seed), 0xc0de))
	byType := map[string][]*Document{}
	for _, d := range docs {
		byType[d.PortalType] = append(byType[d.PortalType], d)
	}
	put := func(d *Document, fields map[string]any) Edit {
		base := map[string]any{}
		for k, v := range fields {
			base[k] = d.Properties[k]
			d.Properties[k] = v
		}
		return Edit{Op: "put", ID: d.ID, PortalType: d.PortalType, Fields: fields, Base: base}
	}
	out := make([]Edit, 0, n)
	locals := 0
	for len(out) < n {
		switch x := r.IntN(10); {
		case x < 2: // post
			locals++
			if r.IntN(2) == 0 {
				first, last := pick(r, firstNames), pick(r, lastNames)
				out = append(out, Edit{Op: "post", ID: fmt.Sprintf("person_module/local_%d", locals), PortalType: "Person",
					ParentRelativeURL: "person_module", Fields: map[string]any{
						"title": first + " " + last, "first_name": first, "last_name": last,
						"default_email_text": slug(first) + "." + slug(last) + "@example.org", "default_telephone_text": phone(r),
						"function": pick(r, functions)}})
			} else {
				o := pick(r, byType["Sale Order"])
				p := pick(r, byType["Product"])
				out = append(out, Edit{Op: "post", ID: fmt.Sprintf("%s/local_%d", o.ID, locals), PortalType: "Sale Order Line",
					ParentRelativeURL: o.ID, Fields: map[string]any{
						"title": "Ligne ajoutée", "resource": p.ID, "quantity": num(float64(1 + r.IntN(50))),
						"price": p.Properties["base_price"]}})
			}
		case x < 3: // action
			var cands []*Document
			for _, d := range byType["Person"] {
				if d.Properties["validation_state"] == "draft" {
					cands = append(cands, d)
				}
			}
			if len(cands) == 0 {
				continue
			}
			d := pick(r, cands)
			d.Properties["validation_state"] = "validated"
			out = append(out, Edit{Op: "action", ID: d.ID, PortalType: d.PortalType, Transition: "validate_action"})
		default: // put
			switch r.IntN(5) {
			case 0, 1:
				d := pick(r, byType["Person"])
				f := map[string]any{"default_telephone_text": phone(r)}
				if r.IntN(3) == 0 {
					f["function"] = pick(r, functions)
				}
				if r.IntN(4) == 0 {
					f["description"] = sentence(r, 5, 20)
				}
				out = append(out, put(d, f))
			case 2:
				d := pick(r, byType["Sale Order Line"])
				f := map[string]any{"quantity": num(float64(1 + r.IntN(300)))}
				if r.IntN(2) == 0 {
					f["price"] = num(float64(100+r.IntN(200_000)) / 100)
				}
				out = append(out, put(d, f))
			case 3:
				d := pick(r, byType["Sale Order"])
				out = append(out, put(d, map[string]any{
					"stop_date": formatRFC822(time.Date(2026, 1, 1+r.IntN(90), 0, 0, 0, 0, time.UTC)),
					"comment":   sentence(r, 4, 18)}))
			default:
				d := pick(r, byType["Organisation"])
				out = append(out, put(d, map[string]any{"default_telephone_text": phone(r), "default_email_text": fmt.Sprintf("info%d@%s.example", r.IntN(100), slug(pick(r, orgWords)))}))
			}
		}
	}
	return out
}

// Entry returns the edit as a batch entry (docs/DESIGN.md appendix B) with the given seq. Its hash is the
// SHA-256 of the entry's JSON as encoding/json writes it (keys sorted, no spaces), without
// the hash.
func (e Edit) Entry(seq int64) map[string]any {
	m := map[string]any{"seq": seq, "op": e.Op, "id": e.ID}
	if e.Op == "post" {
		m["portal_type"] = e.PortalType
		m["parent_relative_url"] = e.ParentRelativeURL
	}
	if e.Fields != nil {
		m["fields"] = e.Fields
	}
	if e.Base != nil {
		m["base"] = e.Base
	}
	if e.Transition != "" {
		m["transition"] = e.Transition
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("erp5sim: marshal entry: %v", err))
	}
	sum := sha256.Sum256(b)
	m["hash"] = hex.EncodeToString(sum[:])
	return m
}

// ToEntry converts a batch entry built by Edit.Entry (or decoded from JSON) for ApplyBatch.
func ToEntry(m map[string]any) Entry {
	b, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("erp5sim: marshal entry: %v", err))
	}
	v, err := decodeJSONObject(b)
	if err != nil {
		panic(fmt.Sprintf("erp5sim: decode entry: %v", err))
	}
	_, _, es, err := parseBatch(map[string]any{"gateway": "g", "epoch": "e", "entries": []any{v}})
	if err != nil {
		panic(fmt.Sprintf("erp5sim: entry: %v", err))
	}
	return es[0]
}
