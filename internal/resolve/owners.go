package resolve

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/iterload"
)

// How socket owners were found, reported by Resolver.OwnerLookup and in
// `who --format json` as "owner_lookup".
const (
	// OwnersBPFIter: one pass of a BPF task iterator over every fd table.
	OwnersBPFIter = "bpf_iter"
	// OwnersProcScan: readlink() of every /proc/PID/fd/N, the way ss -p
	// and lsof do it; used when the iterator cannot be loaded.
	OwnersProcScan = "proc_scan"
)

// socketOwners is what is known about the processes that have a socket open.
type socketOwners struct {
	pids []int // sorted, each once
	// pid and fd of one open file of the socket, from the /proc scan
	// (readReuseFlags reads the socket's flags through it).
	fdPID, fd int
	// Flags read from the socket itself by the iterator; nil with the
	// /proc scan.
	reuseAddr, reusePort, v6only *bool
}

// timewaitKey identifies a TIME_WAIT socket by its 4-tuple.
type timewaitKey struct {
	src, dst     netip.Addr
	sport, dport uint16
}

type timewaitReuse struct {
	reuseAddr, reusePort bool
}

// iterators are the loaded BPF iterators of bpf/iters.bpf.c. One
// user at a time: the maps are the iterators' input (each run empties
// them first: Iterators.Begin).
type iterators struct {
	mu sync.Mutex
	*iterload.Iterators
}

// ownerVariants are the programs of bpf/iters.bpf.c that report socket
// owners, fastest first.
var ownerVariants = iterload.OwnerVariants

// loadIterators loads the tcp iterator and the first of variants (names in
// ownerVariants) that this kernel supports.
func loadIterators(variants []string) (*iterators, error) {
	l, err := iterload.LoadIterators(variants)
	if err != nil {
		return nil, err
	}
	return &iterators{Iterators: l}, nil
}

func (it *iterators) close() { it.Close() }

// boundQuery asks the socket-owner iterator for the TCP sockets bound to
// port in the network namespace netns (an inode) that neither listen nor
// connect: sock_diag lists them only from Linux 6.8.
type boundQuery struct {
	netns uint32
	port  uint16
}

// socketOwners runs the task iterator over every process and returns the
// owners of the given socket inodes, and, with bound set, the bound-only
// TCP sockets of that netns and port (with their owners in the map).
func (it *iterators) socketOwners(inodes []uint32, bound *boundQuery) (map[uint32]*socketOwners, []diagSocket, error) {
	it.mu.Lock()
	defer it.mu.Unlock()
	end, err := it.Begin()
	if err != nil {
		return nil, nil, err
	}
	defer end()
	var filter iterload.InodeFilter
	for _, ino := range inodes {
		key := uint64(ino)
		if err := it.WantedInodes.Update(key, uint8(1), ebpf.UpdateAny); err != nil {
			// A full map (more than its 4096 entries) loses owners of
			// the rest; the holders are still reported, without processes.
			break
		}
		bit := key % uint64(len(filter.Bits)*64)
		filter.Bits[bit/64] |= 1 << (bit % 64)
	}
	if bound != nil { // bound-only sockets' inodes are not known: let all through
		for i := range filter.Bits {
			filter.Bits[i] = ^uint64(0)
		}
	}
	// Only socket_owners reads it (the per-file variant does not, and
	// iterload creates only the maps a program uses).
	if it.WantedFilter != nil {
		if err := it.WantedFilter.Put(uint32(0), &filter); err != nil {
			return nil, nil, fmt.Errorf("set wanted_filter: %w", err)
		}
	}
	if bound != nil {
		key := uint64(bound.netns)<<16 | uint64(bound.port)
		if err := it.WantedBound.Update(key, uint8(1), ebpf.UpdateAny); err != nil {
			return nil, nil, fmt.Errorf("set wanted_bound: %w", err)
		}
		if err := it.BoundLookup.Put(uint32(0), uint32(1)); err != nil {
			return nil, nil, fmt.Errorf("set bound_lookup: %w", err)
		}
	}
	r, err := it.Owners.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("open task iterator: %w", err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, nil, fmt.Errorf("read task iterator: %w", err)
	}
	const size = int(unsafe.Sizeof(iterload.SocketOwner{}))
	out := make(map[uint32]*socketOwners)
	var boundOnly []diagSocket
	for len(data) >= size {
		var rec iterload.SocketOwner
		if _, err := binary.Decode(data[:size], binary.NativeEndian, &rec); err != nil {
			return nil, nil, fmt.Errorf("decode task iterator record: %w", err)
		}
		data = data[size:]
		o := out[uint32(rec.Inode)]
		if o == nil {
			o = &socketOwners{}
			out[uint32(rec.Inode)] = o
			if rec.BoundOnly != 0 { // once per socket, whatever its owners
				boundOnly = append(boundOnly, boundOnlySocket(&rec))
			}
		}
		o.pids = append(o.pids, int(rec.Tgid))
		if rec.HasSock != 0 && o.reuseAddr == nil {
			o.reuseAddr = boolPtr(rec.Reuseaddr != 0)
			o.reusePort = boolPtr(rec.Reuseport != 0)
			o.v6only = boolPtr(rec.V6only != 0)
		}
	}
	for _, o := range out {
		slices.Sort(o.pids)
		o.pids = slices.Compact(o.pids)
	}
	return out, boundOnly, nil
}

// boundOnlySocket is a bound-only TCP socket reported by the task iterator,
// as sock_diag would list it from 6.8 (state CLOSE, no peer).
func boundOnlySocket(rec *iterload.SocketOwner) diagSocket {
	s := diagSocket{proto: "tcp", family: int(rec.Family), state: tcpClose, sport: rec.Port,
		ifindex: rec.BoundDevIf, uid: rec.Uid, inode: uint32(rec.Inode)}
	if s.family == unix.AF_INET6 {
		s.src, s.dst = netip.AddrFrom16(rec.Saddr), netip.IPv6Unspecified()
		s.v6only = boolPtr(rec.V6only != 0)
	} else {
		s.src, s.dst = netip.AddrFrom4([4]byte(rec.Saddr[:4])), netip.IPv4Unspecified()
	}
	return s
}

// timewaitFlags runs the tcp iterator in h's network namespace and returns
// SO_REUSEADDR/SO_REUSEPORT of the TIME_WAIT sockets on port.
func (it *iterators) timewaitFlags(h *netnsHandle, own uint32, port uint16) (map[timewaitKey]timewaitReuse, error) {
	it.mu.Lock()
	defer it.mu.Unlock()
	end, err := it.Begin()
	if err != nil {
		return nil, err
	}
	defer end()
	if err := it.WantedPorts.Update(port, uint8(1), ebpf.UpdateAny); err != nil {
		return nil, fmt.Errorf("set wanted_ports: %w", err)
	}
	var data []byte
	// The tcp iterator walks the namespace of the thread that opens it.
	err = inNetns(h, own, func() error {
		r, err := it.Timewait.Open()
		if err != nil {
			return fmt.Errorf("open tcp iterator: %w", err)
		}
		defer r.Close()
		data, err = io.ReadAll(r)
		return err
	})
	if err != nil {
		return nil, err
	}
	const size = int(unsafe.Sizeof(iterload.TimewaitSocket{}))
	out := make(map[timewaitKey]timewaitReuse)
	for len(data) >= size {
		var rec iterload.TimewaitSocket
		if _, err := binary.Decode(data[:size], binary.NativeEndian, &rec); err != nil {
			return nil, fmt.Errorf("decode tcp iterator record: %w", err)
		}
		data = data[size:]
		k := timewaitKey{sport: rec.Sport, dport: rec.Dport}
		if rec.Family == unix.AF_INET6 {
			k.src, k.dst = netip.AddrFrom16(rec.Saddr), netip.AddrFrom16(rec.Daddr)
		} else {
			k.src, k.dst = netip.AddrFrom4([4]byte(rec.Saddr[:4])), netip.AddrFrom4([4]byte(rec.Daddr[:4]))
		}
		out[k] = timewaitReuse{reuseAddr: rec.Reuseaddr != 0, reusePort: rec.Reuseport != 0}
	}
	return out, nil
}

// scanProcForSockets finds the owners of socket inodes by reading every
// /proc/PID/fd link. Slow on a busy host (a readlink per open fd), hence
// only the fallback. complete says every process's fd table could be
// read (none refused: bindwatch may inspect them all).
func scanProcForSockets(inodes []uint32) (owners map[uint32]*socketOwners, complete bool) {
	want := make(map[uint32]bool, len(inodes))
	for _, ino := range inodes {
		want[ino] = true
	}
	procs, err := os.ReadDir(procRoot)
	if err != nil {
		return make(map[uint32]*socketOwners), false
	}
	names := make([]string, 0, len(procs))
	for _, p := range procs {
		names = append(names, p.Name())
	}
	return scanFDs(names, func(ino uint32) bool { return want[ino] })
}

// scanFDs reads the fd links of the processes named (their /proc
// entries, in that order; other entries are skipped) and returns the
// owners of the sockets want keeps, and whether every fd table could be
// read.
func scanFDs(names []string, want func(uint32) bool) (owners map[uint32]*socketOwners, complete bool) {
	out := make(map[uint32]*socketOwners)
	complete = true
	var link [64]byte // "socket:[4294967295]" fits; longer targets are no sockets
	dents := make([]byte, 8192)
	var fds []string
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		// The links are read relative to the open directory: one path
		// component each, not /proc/PID/fd/N walked from the root. Raw
		// system calls: os.Open would try to add each directory to the
		// poller first (five more calls a process).
		dirFD, err := unix.Open(procRoot+"/"+name+"/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, fs.ErrPermission) {
				complete = false
			}
			continue // exited
		}
		if fds, err = readDirNames(dirFD, dents, fds[:0]); err != nil {
			unix.Close(dirFD)
			continue // exited while read
		}
		for _, fd := range fds {
			n, err := unix.Readlinkat(dirFD, fd, link[:])
			if err != nil {
				continue
			}
			ino, ok := socketLinkInode(link[:n])
			if !ok || !want(ino) {
				continue
			}
			o := out[ino]
			if o == nil {
				o = &socketOwners{fdPID: pid, fd: -1}
				o.fd, _ = strconv.Atoi(fd)
				out[ino] = o
			}
			if !slices.Contains(o.pids, pid) {
				o.pids = append(o.pids, pid)
			}
		}
		unix.Close(dirFD)
	}
	return out, complete
}

// readDirNames appends to names those of the open directory fd's
// entries, read with buf.
func readDirNames(fd int, buf []byte, names []string) ([]string, error) {
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return names, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

// procScan is a one-shot lookup's /proc scan, started beside the
// sock_diag dump so that the two overlap: it counts the host's open fds
// and, when they are few (smallHostFDs), finds the owners of every socket
// open in a process. The dump then names the sockets on the port.
type procScan struct {
	done chan struct{}
	// small: the host has at most the limit of open fds (known from
	// 6.2, see processesWithFDs); the rest is filled only then.
	small bool
	socks map[uint32]*socketOwners
	// complete: every process's fd table could be read.
	complete bool
}

// startProcScan starts a procScan with limit open fds. On a host with
// more, it calls big at once: the lookup will need the iterators, whose
// load can then overlap the dump too.
func startProcScan(limit int, big func()) *procScan {
	ps := &procScan{done: make(chan struct{})}
	go func() {
		defer close(ps.done)
		var names []string
		if names, ps.small = processesWithFDs(limit); ps.small {
			ps.socks, ps.complete = scanFDs(names, func(uint32) bool { return true })
		} else if big != nil {
			big()
		}
	}()
	return ps
}

// owners returns the owners of inodes, as scanProcForSockets would after
// the dump. A socket the early scan did not find (made after the scan
// read its process's fds, or held by no fd table) is looked for again
// by scanProcForSockets, so that none is said to be held by no process
// because it came too late.
func (ps *procScan) owners(inodes []uint32) (map[uint32]*socketOwners, bool) {
	<-ps.done
	out := make(map[uint32]*socketOwners, len(inodes))
	for _, ino := range inodes {
		o := ps.socks[ino]
		if o == nil {
			return scanProcForSockets(inodes)
		}
		out[ino] = o
	}
	return out, ps.complete
}

func boolPtr(b bool) *bool { return &b }

// smallHostFDs is the most open fds on the host for which a one-shot
// lookup scans /proc rather than load the BPF iterators. The scan costs
// ~2.5 µs an fd (a readlink each), loading the iterators 8–10 ms of CPU
// (BTF, verifier), whatever the host.
const smallHostFDs = 2000

// scanIsCheaper reports whether a one-shot lookup of proto sockets finds
// their owners faster with a /proc scan than by loading the iterators,
// and gets the same answer that way: the iterators are not loaded yet,
// no TIME_WAIT socket's flags are needed (only the tcp iterator reads
// them), sock_diag lists bound-only TCP sockets itself (6.8), and the host
// has at most r.scanMaxFDs open fds (counted by ps, started before the
// dump; nil: not started, no scan).
func (r *Resolver) scanIsCheaper(proto string, hasTimeWait bool, ps *procScan) bool {
	if ps == nil || !r.oneShot || hasTimeWait || (proto == "tcp" && !probedDiagListsBoundOnly()) {
		return false
	}
	select {
	case <-r.itersLoaded: // loaded, or failed: use them, or fall back as ever
		return false
	default:
	}
	<-ps.done
	return ps.small
}

// mayScan says whether a one-shot lookup of proto sockets may scan /proc
// (scanIsCheaper), before the dump says what is on the port: then the
// scan starts beside the dump. Before 6.8 TCP lookups do not scan, and
// the probe that says so is not made here.
func (r *Resolver) mayScan(proto string) bool {
	if !r.oneShot || (proto == "tcp" && !host.ReleaseAtLeast(6, 8)) {
		return false
	}
	select {
	case <-r.itersLoaded:
		return false
	default:
		return true
	}
}

// processesWithFDs reports whether the host has at most limit open fds,
// by the size stat() gives a /proc/PID/fd directory: its number of fds
// since 6.2 (one stat a process, ~2 µs). Before, the size is 0: not
// known, false. When true, it also returns the processes to scan (their
// /proc entries, sorted as os.ReadDir sorts them): all but those with no
// fd open (kernel threads), which hold no socket and cannot be handed
// one. One that cannot be stat'ed is scanned, which says why.
func processesWithFDs(limit int) (names []string, ok bool) {
	var st unix.Stat_t
	if err := unix.Stat(procRoot+"/self/fd", &st); err != nil || st.Size == 0 {
		return nil, false // we have stdin, stdout and stderr at least
	}
	dir, err := unix.Open(procRoot, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false
	}
	all, err := readDirNames(dir, make([]byte, 32<<10), nil)
	unix.Close(dir)
	if err != nil {
		return nil, false
	}
	total := int64(0)
	for _, name := range all {
		if name[0] < '1' || name[0] > '9' {
			continue
		}
		if err := unix.Stat(procRoot+"/"+name+"/fd", &st); err != nil {
			if err != unix.ENOENT { // not exited
				names = append(names, name)
			}
			continue
		}
		if total += st.Size; total > int64(limit) {
			return nil, false
		}
		if st.Size > 0 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, true
}

// readReuseFlags reads SO_REUSEADDR and SO_REUSEPORT of each owned socket,
// as the task iterator reports them, through a copy of one of its fds
// (pidfd_getfd, 5.6; root may take one from any process) that is closed at
// once. It fails when any cannot be read, or the fd no longer is the
// socket: the caller then asks the iterators.
func readReuseFlags(owners map[uint32]*socketOwners) error {
	for ino, o := range owners {
		addr, port, err := socketReuse(o.fdPID, o.fd, ino)
		if err != nil {
			return fmt.Errorf("socket %d of pid %d (fd %d): %w", ino, o.fdPID, o.fd, err)
		}
		o.reuseAddr, o.reusePort = boolPtr(addr), boolPtr(port)
	}
	return nil
}

func socketReuse(pid, fd int, inode uint32) (reuseAddr, reusePort bool, err error) {
	if fd < 0 {
		return false, false, errors.New("no fd")
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return false, false, fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(pidfd)
	sock, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return false, false, fmt.Errorf("pidfd_getfd: %w", err)
	}
	defer unix.Close(sock)
	var st unix.Stat_t
	if err := unix.Fstat(sock, &st); err != nil || st.Ino != uint64(inode) {
		return false, false, errors.New("the fd was closed or reused since the scan")
	}
	a, err := unix.GetsockoptInt(sock, unix.SOL_SOCKET, unix.SO_REUSEADDR)
	if err != nil {
		return false, false, err
	}
	p, err := unix.GetsockoptInt(sock, unix.SOL_SOCKET, unix.SO_REUSEPORT)
	if err != nil {
		return false, false, err
	}
	return a != 0, p != 0, nil
}

// fdSocketInode reads the inode of the socket an fd link
// (/proc/PID/fd/N) points to: "socket:[INODE]".
func fdSocketInode(link string) (uint32, bool) {
	var target [64]byte
	n, err := unix.Readlink(link, target[:])
	if err != nil {
		return 0, false
	}
	return socketLinkInode(target[:n])
}

// socketLinkInode is the inode of an fd link's target "socket:[INODE]";
// false for any other target.
func socketLinkInode(target []byte) (uint32, bool) {
	digits, ok := bytes.CutPrefix(target, []byte("socket:["))
	if !ok {
		return 0, false
	}
	digits = bytes.TrimSuffix(digits, []byte("]"))
	if len(digits) == 0 {
		return 0, false
	}
	var ino uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		if ino = ino*10 + uint64(c-'0'); ino > math.MaxUint32 {
			return 0, false
		}
	}
	return uint32(ino), true
}

// socketFD finds the file descriptor of the socket inode in process pid.
func socketFD(pid int, inode uint64) (int, bool) {
	dir := procRoot + "/" + strconv.Itoa(pid) + "/fd/"
	fds, err := os.ReadDir(dir)
	if err != nil {
		return 0, false
	}
	for _, e := range fds {
		if ino, ok := fdSocketInode(dir + e.Name()); ok && uint64(ino) == inode {
			fd, err := strconv.Atoi(e.Name())
			return fd, err == nil
		}
	}
	return 0, false
}
