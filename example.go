package gateway

import _ "embed"

// ExamplePolicy is policy.example.yaml, the policy used when the configuration names none
// (and by `gateway demo`).
//
//go:embed policy.example.yaml
var ExamplePolicy []byte
