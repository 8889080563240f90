package main

import (
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
	"k8s.io/klog/v2"
)

// bufferPoolTiers are the sizes (powers of two) of the buffers gRPC pools
// for the messages peapod marshals and the ones it receives. gRPC's own
// tiers jump from 32 KiB to 1 MiB, and the List and stats answers of a node
// of a hundred pods weigh some 50 to 500 KiB: each took a whole MiB buffer
// (zeroed on every reuse) that the pools then kept, one per CPU, and that
// the GC counted as live, raising its heap target by as much again. With a
// tier at every power of two a message's buffer is less than twice its
// size.
var bufferPoolTiers = []uint8{8, 12, 14, 15, 16, 17, 18, 19, 20}

// gRPC's proto codec takes its buffers from the default pool, which can
// only be replaced before any gRPC use: at init.
func init() {
	pool, err := mem.NewBinaryTieredBufferPool(bufferPoolTiers...)
	if err != nil {
		// The tiers are constants: this is a programming error, and gRPC's
		// own pool still works.
		klog.ErrorS(err, "Keeping gRPC's default buffer pool", "tiers", bufferPoolTiers)
		return
	}
	experimental.SetDefaultBufferPool(pool)
}
