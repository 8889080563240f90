package server

import (
	"github.com/containerd/errdefs/pkg/errgrpc"
)

// toGRPC maps an error from any layer to a gRPC status error. It is the one
// place this happens: handlers and the packages below them return errors
// wrapped with %w around containerd's errdefs classes (errdefs.ErrNotFound,
// ErrInvalidArgument, ErrAlreadyExists, …) or around a gRPC status, and this
// keeps the message while choosing the code. Unclassified errors are Unknown.
func toGRPC(err error) error {
	return errgrpc.ToGRPC(err)
}
