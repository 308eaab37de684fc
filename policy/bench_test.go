package policy_test

import (
	"testing"

	"sitesync.example/gateway/policy"
	"sitesync.example/gateway/query"
)

// benchPolicy has a role with 10 rules (conditions on deny and allow rules, the granting rule
// last) and a 15-field schema with a check.
const benchPolicy = `
roles:
  clerk:
    read:
      scope: 'portal_type:("Person" OR "Organisation" OR "Product") AND NOT title:"%archived%"'
      fields: [title, first_name, last_name, email, reference, city, phone, start_date, stop_date]
    rules:
      - {name: no_remove, effect: deny, methods: [remove], portal_types: ["*"]}
      - {name: kiosk, effect: deny, methods: [post, put], portal_types: ["*"], when: 'peer.name == "kiosk"'}
      - {name: frozen, effect: deny, methods: [put], portal_types: [Person], when: 'old != null && has(old.frozen) && old.frozen == true'}
      - {name: no_salary, effect: deny, methods: [put, post], portal_types: [Person], write: [salary]}
      - {name: orgs, effect: allow, methods: [get, allDocs, post, put], portal_types: [Organisation], write: [title]}
      - {name: products, effect: allow, methods: [get, allDocs], portal_types: [Product]}
      - {name: orders, effect: allow, methods: [get, allDocs], portal_types: [Sale Order]}
      - {name: owner, effect: allow, methods: [put], portal_types: [Person], write: [reference], when: 'has(doc.owner) && doc.owner == peer.name'}
      - {name: dates, effect: allow, methods: [put], portal_types: [Person], write: [start_date, stop_date], when: 'request.method == "put"'}
      - {name: persons, effect: allow, methods: [get, allDocs, post, put], portal_types: [Person],
         write: [title, first_name, last_name, email, city, phone, start_date, stop_date],
         when: 'old == null || old.reference == doc.reference'}
schemas:
  Person:
    fields:
      title: {type: string, required: true, max_length: 200}
      first_name: {type: string, max_length: 100}
      last_name: {type: string, max_length: 100}
      email: {type: string, pattern: '^[^@]+@[^@]+$'}
      reference: {type: string, max_length: 64}
      city: {type: string, max_length: 100}
      phone: {type: string, pattern: '^[0-9 +()-]+$'}
      kind: {type: string, enum: [customer, supplier, staff]}
      age: {type: integer}
      height: {type: number}
      active: {type: boolean}
      start_date: {type: date}
      stop_date: {type: date}
      tags: {type: list, max_length: 20}
      notes: {type: string, max_length: 2000}
    checks:
      - {name: dates_in_order, expr: 'doc.stop_date >= doc.start_date', message: "stop date before start date"}
`

func BenchmarkEngine_AuthorizeWrite(b *testing.B) {
	e := mustParse(b, benchPolicy)
	old := obj(b, `{"portal_type":"Person","title":"Ann Mwale","first_name":"Ann","last_name":"Mwale",
		"email":"ann@example.org","reference":"P-1","city":"Solwezi","phone":"+260 97 1234567","kind":"customer",
		"age":34,"height":1.72,"active":true,"start_date":"2024-01-01","stop_date":"2024-12-31",
		"tags":["a","b"],"notes":"met at the depot"}`)
	patch := obj(b, `{"email":"ann.mwale@example.org","city":"Kalumbila","stop_date":"2025-01-31"}`)
	doc := merge(old, patch)
	in := policy.WriteInput{Peer: "tablet-3", Role: "clerk", Method: "put", ID: "person_module/1", Patch: patch, Doc: doc, Old: old}
	if err := e.AuthorizeWrite(in); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := e.AuthorizeWrite(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEngine_ScopeQuery(b *testing.B) {
	e := mustParse(b, benchPolicy)
	q := mustQuery(b, `portal_type:"Person" AND (ann OR title:"%mwale%") AND NOT city:Solwezi AND start_date:>="2024-01"`)
	opts := query.Options{SortOn: []query.SortKey{{Key: "title"}}, Count: 100, DateKeys: []string{"start_date", "stop_date"}}
	if _, _, err := e.ScopeQuery("tablet-3", "clerk", q, opts); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := e.ScopeQuery("tablet-3", "clerk", q, opts); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEngine_AuthorizeGet(b *testing.B) {
	e := mustParse(b, benchPolicy)
	doc := obj(b, `{"portal_type":"Person","title":"Ann Mwale","reference":"P-1","email":"ann@example.org"}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := e.AuthorizeGet("tablet-3", "clerk", "person_module/1", doc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRateLimiter_Allow(b *testing.B) {
	e := mustParse(b, `roles: {r: {limits: {rate: 1000000000, burst: 1000000000}}}`)
	l := e.NewRateLimiter()
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Allow("p", "r"); err != nil {
			b.Fatal(err)
		}
	}
}
