package server

import (
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/peapod-cri/peapod/version"
)

func TestVersion(t *testing.T) {
	conn := serveBufconn(t, nil, newTestService(nil, nil).Register)
	resp, err := runtime.NewRuntimeServiceClient(conn).Version(callContext(t), &runtime.VersionRequest{Version: "0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Version != "0.1.0" || resp.RuntimeName != "peapod" ||
		resp.RuntimeVersion != version.Version || version.Version == "" || resp.RuntimeApiVersion != "v1" {
		t.Errorf("Version = %+v", resp)
	}
}
