//go:build tools

// Package tools records the commands this module exists to build, so that
// go mod tidy keeps their dependencies.
package tools

import (
	_ "github.com/kedacore/keda/v2/cmd/adapter"
	_ "github.com/kedacore/keda/v2/cmd/operator"
)
