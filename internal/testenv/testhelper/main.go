// Command testhelper does one testenv helper job (BINDWATCH_TEST_HELPER)
// as a static binary of its own: the process tests run inside a FROM
// scratch container image, where the test binary (linked against libc)
// cannot run.
package main

import (
	"fmt"
	"os"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

func main() {
	testenv.RunHelperIfAsked()
	fmt.Fprintln(os.Stderr, "testhelper: set BINDWATCH_TEST_HELPER to a job (see testenv.runJob)")
	os.Exit(2)
}
