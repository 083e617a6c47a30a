package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/bindwatch/bindwatch/internal/enrich"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// k8s is just enough of the Kubernetes API to check the manifest; unknown
// fields are an error (a misspelt field would be ignored by nothing here).
type k8s struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string            `yaml:"name"`
		Namespace string            `yaml:"namespace"`
		Labels    map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		Selector       map[string]any `yaml:"selector"`
		UpdateStrategy map[string]any `yaml:"updateStrategy"`
		Template       struct {
			Metadata map[string]any `yaml:"metadata"`
			Spec     podSpec        `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	HostPID                       bool                `yaml:"hostPID"`
	HostNetwork                   bool                `yaml:"hostNetwork"`
	DNSPolicy                     string              `yaml:"dnsPolicy"`
	AutomountServiceAccountToken  *bool               `yaml:"automountServiceAccountToken"`
	EnableServiceLinks            *bool               `yaml:"enableServiceLinks"`
	Tolerations                   []map[string]string `yaml:"tolerations"`
	TerminationGracePeriodSeconds int                 `yaml:"terminationGracePeriodSeconds"`
	Containers                    []container         `yaml:"containers"`
	Volumes                       []struct {
		Name     string `yaml:"name"`
		HostPath struct {
			Path string `yaml:"path"`
			Type string `yaml:"type"`
		} `yaml:"hostPath"`
	} `yaml:"volumes"`
}

type container struct {
	Name            string                       `yaml:"name"`
	Image           string                       `yaml:"image"`
	ImagePullPolicy string                       `yaml:"imagePullPolicy"`
	Command         []string                     `yaml:"command"`
	Args            []string                     `yaml:"args"`
	Env             []map[string]any             `yaml:"env"`
	Ports           []map[string]any             `yaml:"ports"`
	ReadinessProbe  *probe                       `yaml:"readinessProbe"`
	LivenessProbe   *probe                       `yaml:"livenessProbe"`
	Resources       map[string]map[string]string `yaml:"resources"`
	SecurityContext struct {
		Privileged             *bool `yaml:"privileged"`
		RunAsUser              *int  `yaml:"runAsUser"`
		ReadOnlyRootFilesystem bool  `yaml:"readOnlyRootFilesystem"`
		Capabilities           struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
		SeccompProfile map[string]string `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name             string `yaml:"name"`
		MountPath        string `yaml:"mountPath"`
		ReadOnly         bool   `yaml:"readOnly"`
		MountPropagation string `yaml:"mountPropagation"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
}

// The DaemonSet parses (strictly) and runs bindwatch as the image test
// does: host pid namespace, only the tested capabilities, JSON on stdout,
// every host directory it reads mounted read-only at its own path, on
// every node, with requests and limits, and a readiness probe on the
// metrics address's /healthz.
func TestDaemonSet(t *testing.T) {
	b, err := os.ReadFile("kubernetes/bindwatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds *k8s
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	for {
		var obj k8s
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("kubernetes/bindwatch.yaml: %v", err)
		}
		if obj.Kind == "DaemonSet" {
			ds = &obj
		}
	}
	if ds == nil || ds.APIVersion != "apps/v1" {
		t.Fatal("no apps/v1 DaemonSet in kubernetes/bindwatch.yaml")
	}
	pod := ds.Spec.Template.Spec
	if !pod.HostPID || !pod.HostNetwork {
		t.Errorf("hostPID %v hostNetwork %v, want both (as the image test runs it)", pod.HostPID, pod.HostNetwork)
	}
	if !slices.ContainsFunc(pod.Tolerations, func(t map[string]string) bool {
		return t["operator"] == "Exists" && t["key"] == "" && t["effect"] == ""
	}) {
		t.Errorf("tolerations %v do not tolerate every taint (operator: Exists, no key, no effect)", pod.Tolerations)
	}
	if a := pod.AutomountServiceAccountToken; a == nil || *a {
		t.Error("the pod gets an API token it does not need (automountServiceAccountToken)")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if len(c.Command) > 0 || slices.Contains(c.Args, "--output") || slices.Contains(c.Args, "-o") || slices.Contains(c.Args, "--format") {
		t.Errorf("command %q args %q: the image's entrypoint (--format json to stdout) must stay", c.Command, c.Args)
	}
	sc := c.SecurityContext
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: the tested capabilities are enough")
	}
	var want []string
	for _, capName := range testenv.ImageCaps {
		want = append(want, strings.TrimPrefix(capName, "CAP_"))
	}
	if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || !slices.Equal(sc.Capabilities.Add, want) {
		t.Errorf("capabilities drop %v add %v, want drop [ALL] add %v (testenv.ImageCaps)", sc.Capabilities.Drop, sc.Capabilities.Add, want)
	}
	if !sc.ReadOnlyRootFilesystem {
		t.Error("root filesystem not read-only")
	}

	hostPath := map[string]string{}
	for _, v := range pod.Volumes {
		hostPath[v.Name] = v.HostPath.Path
	}
	mounted := map[string]bool{}
	for _, m := range c.VolumeMounts {
		if !m.ReadOnly {
			t.Errorf("volume %s at %s is not read-only", m.Name, m.MountPath)
		}
		if hostPath[m.Name] != m.MountPath {
			t.Errorf("volume %s: host %q mounted at %q, want the same path (bindwatch reads host paths)", m.Name, hostPath[m.Name], m.MountPath)
		}
		mounted[m.MountPath] = true
	}
	for _, dir := range append([]string{"/sys/kernel/tracing", "/sys/fs/cgroup", "/etc/passwd"}, enrich.StateDirs()...) {
		if !mounted[dir] {
			t.Errorf("%s is not mounted: bindwatch reads it", dir)
		}
	}

	for _, kind := range []string{"requests", "limits"} {
		if c.Resources[kind]["cpu"] == "" || c.Resources[kind]["memory"] == "" {
			t.Errorf("resources.%s %v: want cpu and memory", kind, c.Resources[kind])
		}
	}
	addr := ""
	if i := slices.Index(c.Args, "--metrics-addr"); i >= 0 && i+1 < len(c.Args) {
		addr = c.Args[i+1]
	}
	port := regexp.MustCompile(`:(\d+)$`).FindStringSubmatch(addr)
	if port == nil {
		t.Fatalf("no --metrics-addr HOST:PORT in args %q: the readiness probe needs /healthz", c.Args)
	}
	portName := ""
	for _, p := range c.Ports {
		if n, _ := strconv.Atoi(port[1]); p["containerPort"] == n {
			portName, _ = p["name"].(string)
		}
	}
	if r := c.ReadinessProbe; r == nil || r.HTTPGet.Path != "/healthz" || r.HTTPGet.Port != portName || portName == "" {
		t.Errorf("readiness probe %+v, want GET /healthz on the --metrics-addr port %s (named %q)", r, port[1], portName)
	}
}
