package record

import (
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
)

type testRecord struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

func init() { typeurl.Register(&testRecord{}, "io.peapod", "test", "Record") }

func TestLoad(t *testing.T) {
	good, err := typeurl.MarshalAny(&testRecord{ID: "x", State: "ready"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		exts    map[string]typeurl.Any
		want    testRecord
		wantErr bool
	}{
		{"present", map[string]typeurl.Any{"k": good}, testRecord{ID: "x", State: "ready"}, false},
		{"missing", map[string]typeurl.Any{"other": good}, testRecord{}, true},
		{"no extensions", nil, testRecord{}, true},
		{"not JSON", map[string]typeurl.Any{"k": &anypb.Any{TypeUrl: "x", Value: []byte("{")}}, testRecord{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got testRecord
			err := Load(containers.Container{ID: "c1", Extensions: tc.exts}, "k", &got)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("Load = %+v, %v; want %+v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
