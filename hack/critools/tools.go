//go:build tools

// Package tools pins cri-tools' packages so that crictl, and critest (the test binary of
// cmd/critest, whose only file is a test), build from this module.
package tools

import (
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
	_ "sigs.k8s.io/cri-tools/pkg/validate"
)
