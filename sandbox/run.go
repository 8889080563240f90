package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/peapod-cri/peapod/eventbus"
	"github.com/peapod-cri/peapod/failpoint"
	"github.com/peapod-cri/peapod/image"
	"github.com/peapod-cri/peapod/metrics"
	"github.com/peapod-cri/peapod/oplease"
	"github.com/peapod-cri/peapod/record"
)

// cleanupTimeout bounds the rollback of a failed RunPodSandbox, which runs
// even when the caller's context is gone.
const cleanupTimeout = time.Minute

// Run creates and starts a pod sandbox and returns its ID. On failure,
// everything done so far is undone, and the error can be retried.
func (m *Manager) Run(ctx context.Context, cfg *runtime.PodSandboxConfig, handler string) (_ string, retErr error) {
	md := cfg.GetMetadata()
	if err := validate(cfg); err != nil {
		return "", err
	}
	if _, err := bandwidth(cfg.GetAnnotations()); err != nil {
		return "", fmt.Errorf("pod sandbox bandwidth: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	rh, err := m.config.Handlers.Get(handler)
	if err != nil {
		return "", err
	}
	userns, err := UserNSOf(cfg)
	if err != nil {
		return "", err
	}
	// The pause process runs as the pod's run_as_user and run_as_group.
	sc := cfg.GetLinux().GetSecurityContext()
	if err := userns.CheckIDs("pod sandbox", sc.GetRunAsUser(), sc.GetRunAsGroup(), nil); err != nil {
		return "", err
	}
	if userns != nil && !rh.Features.UserNamespaces {
		return "", fmt.Errorf("runtime handler %q does not support user namespaces on this node: %w", rh.Name, errdefs.ErrInvalidArgument)
	}
	id := newID()
	name := reservationName(md)
	if err := m.index.Reserve(name, id); err != nil {
		return "", err
	}
	defer func() {
		if retErr != nil {
			m.index.Release(name, id)
		}
	}()
	unlock := m.index.Lock(id)
	defer unlock()

	done := metrics.Phase(opRun, "pause_image")
	pause, err := m.pauseImage(ctx)
	done()
	if err != nil {
		return "", err
	}
	raw, err := proto.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("encoding sandbox config: %w", err)
	}
	sb := &Sandbox{Config: cfg, Record: Record{
		Metadata: Metadata{ID: id, Config: raw, RuntimeHandler: handler, CreatedAt: time.Now()},
		Status:   Status{State: StateCreating},
	}}
	defer func() {
		if retErr == nil {
			return
		}
		// Undo with a context of our own: the caller's may be what ended.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if err := m.cleanup(cctx, sb); err != nil {
			klog.ErrorS(err, "Rolling back a failed RunPodSandbox; retrying in the background", "id", id)
			m.retryCleanup(ctx, sb)
		}
	}()

	done = metrics.Phase(opRun, "netns")
	switch {
	case userns != nil:
		// UserNSOf refuses a host-network pod with its own user namespace.
		if err := os.MkdirAll(m.stateDir(id), 0o711); err != nil {
			return "", err
		}
		path, err := newNetNSInUserNS(m.netnsDir(), m.userNSPin(id), userns)
		if err != nil {
			return "", fmt.Errorf("creating namespaces for sandbox %s: %w", id, err)
		}
		sb.NetNS, sb.UserNS = path, m.userNSPin(id)
	case !sb.HostNetwork():
		path, err := newNetNS(m.netnsDir())
		if err != nil {
			return "", fmt.Errorf("creating network namespace for sandbox %s: %w", id, err)
		}
		sb.NetNS = path
	}
	done()
	failpoint.Hit("sandbox-run:after-netns")
	done = metrics.Phase(opRun, "files")
	if err := m.setupFiles(sb); err != nil {
		return "", err
	}
	done()
	failpoint.Hit("sandbox-run:after-files")
	// peapod's own lease keeps the snapshot until its container holds it;
	// start-up ends it if peapod dies here (the client's own would hold
	// the snapshot for a day).
	lctx, endLease, err := oplease.Begin(ctx, m.client.LeasesService(), "sandbox-run", id)
	if err != nil {
		return "", err
	}
	// The container records the netns before anything is asked of CNI.
	done = metrics.Phase(opRun, "container_create")
	ctr, err := m.client.NewContainer(lctx, id,
		client.WithContainerLabels(record.Labels(record.KindSandbox, cfg.GetLabels(), nil, map[string]string{kindLabel: kindSandbox})),
		rh.ContainerOpt(),
		client.WithSnapshotter(image.Snapshotter),
		client.WithNewSnapshot(id, pause, userns.SnapshotOpts()...),
		client.WithNewSpec(append(m.pauseSpec(sb, pause, userns), rh.SpecOpt())...),
		client.WithContainerExtension(recordExtension, &sb.Metadata),
		client.WithContainerExtension(statusExtension, &sb.Status),
	)
	endLease()
	done()
	if err != nil {
		return "", fmt.Errorf("creating pause container of sandbox %s: %w", id, err)
	}
	failpoint.Hit("sandbox-run:after-container")
	done = metrics.Phase(opRun, "shim_group")
	m.registerShimGroup(ctx, sb, rh.Type)
	done()
	// The pause process needs no network to start, and CNI configures the
	// namespace whoever is in it: the network is set up while the pause
	// task is made and started. Both are undone by cleanup on failure, and
	// by recovery after a crash (the netns is recorded, and CNI DEL works
	// from the current config when the record names no network).
	var network errgroup.Group
	if !sb.HostNetwork() {
		network.Go(func() error {
			defer metrics.Phase(opRun, "cni")()
			res, err := m.network.Setup(ctx, m.podNetwork(sb))
			if err == nil {
				failpoint.Hit("sandbox-run:after-cni-add")
				sb.Network, sb.IPs = res.Network, res.IPs
			}
			return err
		})
	}
	pid, err := m.startPause(ctx, ctr, id)
	if nerr := network.Wait(); nerr != nil {
		err = nerr // a network that failed is the failure to tell
	}
	if err != nil {
		return "", err
	}
	sb.Pid, sb.State = pid, StateReady
	done = metrics.Phase(opRun, "record_write")
	err = record.Save(ctx, m.client, id, statusExtension, &sb.Status)
	done()
	if err != nil {
		return "", err
	}
	m.index.Add(sb)
	m.publish(id, eventbus.Created)
	m.publish(id, eventbus.Started)
	klog.V(2).InfoS("Sandbox ready", "id", id, "pod", md.GetNamespace()+"/"+md.GetName(), "ips", sb.IPs)
	return id, nil
}

// opRun names RunPodSandbox's phases in the metrics.
const opRun = "sandbox_run"

// startPause creates and starts the pause task of sandbox id and returns
// its PID.
func (m *Manager) startPause(ctx context.Context, ctr client.Container, id string) (uint32, error) {
	failpoint.Hit("sandbox-run:before-task")
	done := metrics.Phase(opRun, "task_create")
	task, err := ctr.NewTask(ctx, cio.NullIO)
	done()
	if err != nil {
		return 0, fmt.Errorf("creating pause task of sandbox %s: %w", id, err)
	}
	done = metrics.Phase(opRun, "task_start")
	err = task.Start(ctx)
	done()
	if err != nil {
		return 0, fmt.Errorf("starting pause container of sandbox %s: %w", id, err)
	}
	failpoint.Hit("sandbox-run:after-start")
	return task.Pid(), nil
}

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
