package sandbox

import (
	"reflect"
	"testing"
)

func TestParseNetDev(t *testing.T) {
	raw := []byte(`Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0:    5000      40    2    0    0     0          0         0     3000      30    1    0    0     0       0          0
  net1: 7 1 0 0 0 0 0 0 9 1 0 0 0 0 0 0
`)
	got, err := parseNetDev(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := []InterfaceStats{
		{Name: "eth0", RxBytes: 5000, RxErrors: 2, TxBytes: 3000, TxErrors: 1},
		{Name: "net1", RxBytes: 7, TxBytes: 9},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseNetDev = %+v, want %+v", got, want)
	}
}
