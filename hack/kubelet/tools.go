//go:build tools

// Package tools pins the kubelet's command package so that `go build` can build it from
// this module.
package tools

import _ "k8s.io/kubernetes/cmd/kubelet"
