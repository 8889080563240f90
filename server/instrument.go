package server

import (
	"context"
	"path"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// Observer records finished calls; *metrics.Metrics implements it.
type Observer interface {
	ObserveRPC(method string, code codes.Code, d time.Duration)
}

// UnaryInterceptor wraps every unary CRI call: it waits for start-up
// recovery (see Recovery; rec may be nil), a panic becomes codes.Internal
// (logged with its stack) instead of a crash, errors are mapped to gRPC
// codes, and each call is logged and measured.
func UnaryInterceptor(obs Observer, rec Recovery) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		start := time.Now()
		defer func() {
			if r := recover(); r != nil {
				resp, err = nil, recovered(info.FullMethod, r)
			}
			err = finish(obs, info.FullMethod, start, err)
		}()
		if err := awaitRecovery(ctx, rec, path.Base(info.FullMethod)); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor is UnaryInterceptor for streaming calls (GetContainerEvents).
func StreamInterceptor(obs Observer, rec Recovery) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		start := time.Now()
		defer func() {
			if r := recover(); r != nil {
				err = recovered(info.FullMethod, r)
			}
			err = finish(obs, info.FullMethod, start, err)
		}()
		if err := awaitRecovery(ss.Context(), rec, path.Base(info.FullMethod)); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

func recovered(fullMethod string, r any) error {
	method := path.Base(fullMethod)
	klog.ErrorS(nil, "Panic in CRI call", "method", method, "panic", r, "stack", string(debug.Stack()))
	return status.Errorf(codes.Internal, "%s: internal error: %v", method, r)
}

func finish(obs Observer, fullMethod string, start time.Time, err error) error {
	err = toGRPC(err)
	method := path.Base(fullMethod)
	code := status.Code(err)
	d := time.Since(start)
	if obs != nil {
		obs.ObserveRPC(method, code, d)
	}
	switch code {
	case codes.OK:
		klog.V(4).InfoS("CRI call", "method", method, "duration", d)
	case codes.Internal, codes.Unknown, codes.DataLoss:
		klog.ErrorS(err, "CRI call failed", "method", method, "duration", d, "code", code)
	default:
		// Expected outcomes (NotFound, Unimplemented, …): the caller sees them.
		klog.V(4).InfoS("CRI call", "method", method, "duration", d, "code", code, "err", err)
	}
	return err
}
