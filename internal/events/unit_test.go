package events

import (
	"strings"
	"testing"
)

// A unit's name is what a user chose for its own units: escaped, and a
// container, when there is one, is named instead.
func TestPlaceText(t *testing.T) {
	for _, c := range []struct {
		p    Process
		want string
	}{
		{Process{Unit: "nginx.service"}, "unit nginx.service"},
		{Process{Unit: "app.service", UnitManager: "user@1000.service"}, "unit app.service of user@1000.service"},
		{Process{Unit: "x\x1b[2J\n.service", UnitManager: "user@1000.service"}, `unit x\x1b[2J\x0a.service of user@1000.service`},
		{Process{Unit: "docker-" + strings.Repeat("ab", 32) + ".scope", Container: Container{Runtime: "docker", Name: "web"}}, "container web"},
		{Process{}, ""},
	} {
		if got := PlaceText(&c.p); got != c.want {
			t.Errorf("PlaceText(%+v) = %q, want %q", c.p, got, c.want)
		}
	}
}
