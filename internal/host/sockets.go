package host

// PortSockets is what sock_diag shows on a port right now, without owners:
// the inodes of the sockets bound to it (with their state) and how many
// TIME_WAIT sockets it has. The incident poll asks it often (resolve
// lists them, incident reads them), so it is never cached.
type PortSockets struct {
	Inodes   map[uint64]string
	TimeWait int
}
