package host

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// CheckDirLinks refuses a directory path that goes through a symlink owned
// by someone other than root or bindwatch's own user. Files bindwatch
// writes are opened without following a symlink in their last component
// (O_NOFOLLOW); this covers the directories above: a link such as /tmp/logs
// -> /etc planted by another user would otherwise make root create files
// wherever that user chose. Links root set up (/var/run -> /run) pass.
func CheckDirLinks(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	prefix := "/"
	for _, part := range strings.Split(abs, "/") {
		if part == "" {
			continue
		}
		prefix = filepath.Join(prefix, part)
		st, err := os.Lstat(prefix)
		if err != nil {
			return nil // a missing directory: opening it says so
		}
		if st.Mode()&os.ModeSymlink == 0 {
			continue
		}
		uid := st.Sys().(*syscall.Stat_t).Uid
		if uid != 0 && int(uid) != os.Geteuid() {
			target, _ := os.Readlink(prefix)
			return fmt.Errorf("%s is a symbolic link (to %s) that uid %d owns, and bindwatch does not write through another user's links: one may have been planted to make root write elsewhere (hint: give the real path)", prefix, target, uid)
		}
	}
	return nil
}
