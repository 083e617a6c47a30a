package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// PortLabel is one --port argument that gets its own value of the port
// label (--metrics-port-label): a port, or a range as written ("9000-9100").
type PortLabel struct {
	Lo, Hi uint16
}

func (p PortLabel) String() string {
	if p.Lo == p.Hi {
		return strconv.Itoa(int(p.Lo))
	}
	return fmt.Sprintf("%d-%d", p.Lo, p.Hi)
}

// MetricsOptions configure Metrics.
type MetricsOptions struct {
	// Addr is where to serve /metrics and /healthz (HOST:PORT).
	Addr string
	// Version is bindwatch's version, for bindwatch_build_info.
	Version string
	// PortLabels, if not empty, add a port label to
	// bindwatch_bind_failures_total, with one value per --port argument:
	// cardinality stays what the operator asked for.
	PortLabels []PortLabel
	// Outputs reports what the other outputs could not write, for
	// bindwatch_output_errors_total and bindwatch_output_dropped_records_total.
	Outputs func() []Stats
}

// Metrics is the Prometheus output: counts from the records, served over
// HTTP. Labels are few and bounded — no pid, comm, container or (unless
// asked for) port — so a host under a storm cannot blow up the series
// count.
type Metrics struct {
	failures      *family
	eventsLost    *family
	incidentLost  *family
	untracked     *family
	holderLookups *family
	shared        *family
	lastFailure   *family
	buildInfo     *family
	ports         []PortLabel
	version       string
	outputs       func() []Stats

	// Incidents, by how they ended: incidents counts them by cause and
	// state, unserved and contention observe their durations; open holds
	// the incidents still open (at most maxOpenIncidents), with their
	// cause, which the records that end them do not repeat.
	incidents  *family
	unserved   *histogram
	contention *histogram
	mu         sync.Mutex
	open       map[incidentKey]string
	// notOpen are ports whose failures the tracer gave no incident (its
	// table or the user's quota was full: an incident_untracked record),
	// at most maxOpenIncidents: their failures open none here either.
	notOpen map[incidentKey]bool

	srv   *http.Server
	conns *connLimiter
	done  chan struct{}
}

// ListenMetrics starts serving metrics on opts.Addr; an address that
// cannot be listened on is an error now, not later.
func ListenMetrics(opts MetricsOptions) (*Metrics, error) {
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w (hint: give a free HOST:PORT, e.g. 127.0.0.1:9851)", opts.Addr, err)
	}
	conns := newConnLimiter(ln, MetricsMaxConns())
	labels := []string{"syscall", "errno", "proto"}
	if len(opts.PortLabels) > 0 {
		labels = append(labels, "port")
	}
	m := &Metrics{
		failures: newFamily(kindCounter, "bindwatch_bind_failures_total",
			"Failed bind()/listen() calls seen by the kernel, reported or folded.", labels...),
		eventsLost: newFamily(kindCounter, "bindwatch_events_lost_total",
			"Failures the kernel counted but could not hand over (ring buffer full)."),
		incidentLost: newFamily(kindCounter, "bindwatch_incident_records_lost_total",
			"Incident records (signal, released, recovered, port_shared) lost: the kernel's incident ring or the tracer's queue was full."),
		untracked: newFamily(kindCounter, "bindwatch_incidents_untracked_total",
			"Ports whose incident was not tracked (incident_untracked records), by table: incidents (no incident kept), kernel (no signal, release or recovery records); reason: full, user_quota.", "table", "reason"),
		holderLookups: newFamily(kindCounter, "bindwatch_holder_lookups_total",
			"Holder lookups for reported failures, by result: live (a holder seen live), recorded (only holders recorded in the kernel, gone since), none.", "result"),
		shared: newFamily(kindCounter, "bindwatch_port_shared_total",
			"Successful SO_REUSEPORT binds/listens that joined a port another program holds (port_shared records, with the joins each folds), by proto and why: program (another executable or script), unit (the same program in another cgroup), copy (the same program started again, no hand-over).", "proto", "why"),
		lastFailure: newFamily(kindGauge, "bindwatch_last_failure_timestamp_seconds",
			"When the last failure was reported (Unix time)."),
		buildInfo: newFamily(kindGauge, "bindwatch_build_info",
			"1, labelled with bindwatch's version, the kernel hook backend and the kernel release.", "version", "backend", "kernel"),
		incidents: newFamily(kindCounter, "bindwatch_incidents_total",
			"Port incidents (a port's failures from the first until it is held again), by the cause of the first failure and how they ended: recovered, abandoned (nobody tried any more), or open when tracing stopped.", "cause", "state"),
		unserved: newHistogram("bindwatch_incident_unserved_seconds",
			"The outage of each recovered incident: from the last holder's release to the recovery, while nothing listened (only where the release was seen).", incidentBuckets),
		contention: newHistogram("bindwatch_incident_contention_seconds",
			"How long someone could not get the port, for each incident that ended: from its first failure to the recovery, or to the last attempt of an abandoned one.", incidentBuckets),
		open:    map[incidentKey]string{},
		notOpen: map[incidentKey]bool{},
		ports:   opts.PortLabels,
		version: opts.Version,
		outputs: opts.Outputs,
		conns:   conns,
		done:    make(chan struct{}),
	}
	m.eventsLost.add(0)
	m.incidentLost.add(0)
	m.lastFailure.add(0)
	for _, r := range []string{"live", "recorded", "none"} {
		m.holderLookups.add(0, r)
	}
	for _, proto := range []string{"tcp", "udp"} {
		for _, why := range []string{events.SharedProgram, events.SharedUnit, events.SharedCopy} {
			m.shared.add(0, proto, why)
		}
	}
	for _, table := range []string{events.UntrackedIncidents, events.UntrackedKernel} {
		for _, reason := range []string{events.UntrackedFull, events.UntrackedUserQuota} {
			m.untracked.add(0, table, reason)
		}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", m.serveMetrics)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	m.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: metricsReadHeaderTimeout,
		ReadTimeout:       metricsReadTimeout,
		WriteTimeout:      metricsWriteTimeout,
		IdleTimeout:       metricsIdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ConnState:         conns.connState,
	}
	go func() {
		defer close(m.done)
		m.srv.Serve(conns)
	}()
	return m, nil
}

// incidentBuckets are the histograms' buckets, in seconds: from a
// handover of a few milliseconds to a port lost for ten minutes.
var incidentBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 600}

// incidentKey is the port of an incident, as the live tracer keys it
// (its host is the tracer's).
type incidentKey struct {
	netns uint32
	proto string
	port  uint16
}

// maxOpenIncidents bounds the incidents the metrics follow at once: the
// live tracer's own bound (incident.MaxOpen), which no more get
// incidents beyond.
const maxOpenIncidents = 4096

// Incident states, the values of bindwatch_incidents_total's state.
const (
	stateRecovered = "recovered"
	stateAbandoned = "abandoned"
	stateOpen      = "open"
)

// causeLabel is the cause label of an incident: one of events.Causes,
// "unknown" when the failure was not diagnosed, "other" for any other
// value (a record of a newer bindwatch), so the label's values stay the
// documented few.
func causeLabel(cause string) string {
	switch {
	case cause == "":
		return "unknown"
	case slices.Contains(events.Causes, cause):
		return cause
	}
	return "other"
}

// Write counts one record.
func (m *Metrics) Write(rec events.Record) error {
	m.count(rec)
	return nil
}

// count counts rec; false for a record type it does not know (it may
// call for a metric), which TestFormsKnowEveryRecord catches.
func (m *Metrics) count(rec events.Record) bool {
	switch r := rec.(type) {
	case *events.Start:
		m.buildInfo.set(1, m.version, r.Backend, r.Kernel)
		m.mu.Lock()
		clear(m.open)
		clear(m.notOpen)
		m.mu.Unlock()
	case *events.Failure:
		m.failures.add(1, m.labels(r.Syscall, r.Errno, r.Proto, r.Port)...)
		m.holderLookups.add(1, lookupResult(r))
		m.lastFailure.set(float64(r.Time.UnixNano()) / 1e9)
		m.failed(r)
	case *events.Repeats:
		m.failures.add(float64(r.Count), m.labels(r.Syscall, r.Errno, r.Proto, r.Port)...)
	case *events.Lost:
		m.eventsLost.add(float64(r.Count))
		m.incidentLost.add(float64(r.IncidentRecords))
	case *events.PortShared:
		if (r.Proto == "tcp" || r.Proto == "udp") && (r.Why == events.SharedProgram || r.Why == events.SharedUnit || r.Why == events.SharedCopy) {
			m.shared.add(1+float64(r.Repeats), r.Proto, r.Why)
		}
	case *events.Recovered:
		m.ended(incidentKey{r.Netns, r.Proto, r.Port}, stateRecovered)
		m.contention.observe(float64(r.ContentionMS) / 1000)
		if r.UnservedMS != nil {
			m.unserved.observe(float64(*r.UnservedMS) / 1000)
		}
	case *events.Abandoned:
		m.ended(incidentKey{r.Netns, r.Proto, r.Port}, stateAbandoned)
		m.contention.observe(max(r.LastAttempt.Sub(r.Start), 0).Seconds())
	case *events.Stop:
		m.mu.Lock()
		for k, cause := range m.open {
			m.incidents.add(1, cause, stateOpen)
			delete(m.open, k)
		}
		clear(m.notOpen)
		m.mu.Unlock()
	case *events.IncidentUntracked:
		if (r.Table == events.UntrackedIncidents || r.Table == events.UntrackedKernel) &&
			(r.Reason == events.UntrackedFull || r.Reason == events.UntrackedUserQuota) {
			m.untracked.add(1, r.Table, r.Reason)
		}
		if r.Table == events.UntrackedIncidents { // the failure before it opened no incident
			m.notTracked(incidentKey{r.Netns, r.Proto, r.Port})
		}
	case *events.Released, *events.Signal, *events.SignalRepeats, *events.PortFree, *events.OutputLost,
		*events.Incident, *events.Spread, *events.Who, *events.Doctor, *events.FreeRecord, *events.HeldRecord, *events.WaitFreeRecord:
		// No metric of their own: an incident is counted by its end, an
		// output's losses from its Stats; the rest a tracer never writes.
	default:
		return false
	}
	return true
}

// failed notes the incident a failure opens, or the cause of the one it
// is part of (the first diagnosed failure's, as the report says it).
func (m *Metrics) failed(f *events.Failure) {
	k := incidentKey{f.Process.Netns, f.Proto, f.Port}
	m.mu.Lock()
	defer m.mu.Unlock()
	cause, ok := m.open[k]
	switch {
	case m.notOpen[k]:
	case !ok && len(m.open) < maxOpenIncidents:
		m.open[k] = causeLabel(f.Cause)
	case ok && cause == "unknown" && f.Cause != "":
		m.open[k] = causeLabel(f.Cause)
	}
}

// notTracked notes that the tracer gave the failures on k no incident.
func (m *Metrics) notTracked(k incidentKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.open, k)
	if len(m.notOpen) < maxOpenIncidents {
		m.notOpen[k] = true
	}
}

// ended counts the incident on k as ended in state.
func (m *Metrics) ended(k incidentKey, state string) {
	m.mu.Lock()
	cause, ok := m.open[k]
	delete(m.open, k)
	delete(m.notOpen, k)
	m.mu.Unlock()
	if !ok {
		cause = "unknown" // opened beyond the bound
	}
	m.incidents.add(1, cause, state)
}

func (m *Metrics) labels(syscall, errno, proto string, port uint16) []string {
	l := []string{syscall, errno, proto}
	if len(m.ports) == 0 {
		return l
	}
	for _, p := range m.ports {
		if port >= p.Lo && port <= p.Hi {
			return append(l, p.String())
		}
	}
	return append(l, "other")
}

func lookupResult(f *events.Failure) string {
	if len(f.Holders) == 0 {
		return "none"
	}
	for _, h := range f.Holders {
		if h.Source != events.Recorded {
			return "live"
		}
	}
	return "recorded"
}

// Close stops serving.
func (m *Metrics) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := m.srv.Shutdown(ctx)
	<-m.done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// serveMetrics writes every series, the families in name order.
func (m *Metrics) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	var b bytes.Buffer
	writers := map[string]func(*bytes.Buffer){
		"bindwatch_bind_failures_total":            m.failures.write,
		"bindwatch_build_info":                     m.buildInfo.write,
		"bindwatch_events_lost_total":              m.eventsLost.write,
		"bindwatch_holder_lookups_total":           m.holderLookups.write,
		"bindwatch_incident_contention_seconds":    m.contention.write,
		"bindwatch_incident_records_lost_total":    m.incidentLost.write,
		"bindwatch_incident_unserved_seconds":      m.unserved.write,
		"bindwatch_incidents_total":                m.incidents.write,
		"bindwatch_incidents_untracked_total":      m.untracked.write,
		"bindwatch_last_failure_timestamp_seconds": m.lastFailure.write,
		"bindwatch_metrics_connections":            m.conns.write,
		"bindwatch_output":                         m.writeOutputs,
		"bindwatch_port_shared_total":              m.shared.write,
		"go":                                       writeGoMetrics,
		"process":                                  writeProcessMetrics,
	}
	for _, name := range slices.Sorted(maps.Keys(writers)) {
		writers[name](&b)
	}
	w.Header().Set("Content-Type", expositionType)
	w.Write(b.Bytes())
}

// writeOutputs writes what the other outputs could not write, read now.
func (m *Metrics) writeOutputs(b *bytes.Buffer) {
	if m.outputs == nil {
		return
	}
	stats := m.outputs()
	writeHeader(b, "bindwatch_output_dropped_records_total",
		"Records an output could not write (counted in-band in output_lost records).", kindCounter)
	for _, s := range stats {
		writeSample(b, "bindwatch_output_dropped_records_total", []string{"output"}, []string{s.Output}, float64(s.Dropped))
	}
	writeHeader(b, "bindwatch_output_errors_total",
		"Writes an output (file, stdout, stderr, syslog) failed: a full disk, an I/O error, a reader or collector gone.", kindCounter)
	for _, s := range stats {
		writeSample(b, "bindwatch_output_errors_total", []string{"output"}, []string{s.Output}, float64(s.Errors))
	}
}
