//go:build !amd64 && !arm64

package tracer

// The tracer's BPF object reads syscall arguments from registers laid out
// as one architecture lays them out, so it is built per GOARCH (gen.go),
// and this one has none yet. Rather than a build that loads an object
// reading the wrong registers, the build stops here: add this GOARCH's
// go:generate line to gen.go, run make generate, and exclude it above.
type _ bindwatch_has_no_BPF_object_for_this_GOARCH_see_internal_tracer_gen_go
