//go:build tools

// Package tools names the Kubernetes programs the lab builds, so that
// `go mod tidy` keeps everything they import in go.sum.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kubelet"
)
