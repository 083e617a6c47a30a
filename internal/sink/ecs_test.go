package sink

import (
	"encoding/json"
	"testing"
)

// network.iana_number is the transport's IANA protocol number: 6 for TCP,
// 17 for UDP.
func TestECSIANANumber(t *testing.T) {
	for proto, want := range map[string]string{"tcp": "6", "udp": "17"} {
		f := failure(8080)
		f.Proto = proto
		b, err := ECS(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Network struct {
				Transport  string `json:"transport"`
				IANANumber string `json:"iana_number"`
			} `json:"network"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v: %s", proto, err, b)
		}
		if d.Network.Transport != proto || d.Network.IANANumber != want {
			t.Errorf("%s failure: network.transport %q, iana_number %q; want %q, %q", proto, d.Network.Transport, d.Network.IANANumber, proto, want)
		}
	}
}
