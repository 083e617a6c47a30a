package iterload

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The checks of a shared copy (openPins) read what they need of each
// pinned map's and program's kernel info with one BPF_OBJ_GET_INFO_BY_FD:
// cilium/ebpf's Map.Info and Program.Info also read /proc/self/fdinfo,
// and Program.Info the program's BTF (for a name longer than the
// kernel's 15 bytes), ~40 syscalls for the copy's five maps and two
// programs, which every one-shot `who` paid (~1.4 ms on a host where
// syscalls are dear, of a 24 ms `who`).

// bpfMapInfo is the head of struct bpf_map_info (uapi/linux/bpf.h); the
// kernel fills as much of it as it is given.
type bpfMapInfo struct {
	Type, ID, KeySize, ValueSize, MaxEntries, MapFlags uint32
}

// bpfProgInfo is struct bpf_prog_info up to its name. MapIDs points at
// NrMapIDs slots, which the kernel fills, setting NrMapIDs to how many
// maps the program uses.
type bpfProgInfo struct {
	Type, ID                        uint32
	Tag                             [8]byte
	JitedProgLen, XlatedProgLen     uint32
	JitedProgInsns, XlatedProgInsns uint64
	LoadTime                        uint64
	CreatedByUID                    uint32
	NrMapIDs                        uint32
	MapIDs                          unsafe.Pointer // __aligned_u64 (64-bit only)
	Name                            [unix.BPF_OBJ_NAME_LEN]byte
}

// objInfo is BPF_OBJ_GET_INFO_BY_FD of fd into info (size bytes). The
// attribute holds info as a pointer, so that the Go runtime moves it
// with a stack that grows and keeps it alive.
func objInfo(fd int, info unsafe.Pointer, size uintptr) error {
	attr := struct {
		fd, infoLen uint32
		info        unsafe.Pointer
	}{uint32(fd), uint32(size), info}
	_, err := bpfCall(unix.BPF_OBJ_GET_INFO_BY_FD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

// mapInfo is the kernel's info of the map fd.
func mapInfo(fd int) (bpfMapInfo, error) {
	var info bpfMapInfo
	err := objInfo(fd, unsafe.Pointer(&info), unsafe.Sizeof(info))
	return info, err
}

// maxProgMaps is the most maps a pinned program may use: the iterators
// use five at most.
const maxProgMaps = 64

// progInfo is the type, name (the kernel's first 15 bytes of it) and map
// IDs of the program whose ID is id.
func progInfo(id uint32) (typ uint32, name string, maps []uint32, err error) {
	attr := struct{ id, next, openFlags uint32 }{id: id}
	fd, err := bpfCall(unix.BPF_PROG_GET_FD_BY_ID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		return 0, "", nil, fmt.Errorf("program %d: %w", id, err)
	}
	defer unix.Close(fd)
	ids := make([]uint32, maxProgMaps)
	info := bpfProgInfo{NrMapIDs: maxProgMaps, MapIDs: unsafe.Pointer(&ids[0])}
	if err := objInfo(fd, unsafe.Pointer(&info), unsafe.Sizeof(info)); err != nil {
		return 0, "", nil, fmt.Errorf("program %d: %w", id, err)
	}
	if info.NrMapIDs > maxProgMaps {
		return 0, "", nil, fmt.Errorf("program %d uses %d maps, more than the %d an iterator of this build may", id, info.NrMapIDs, maxProgMaps)
	}
	return info.Type, unix.ByteSliceToString(info.Name[:]), ids[:info.NrMapIDs], nil
}
