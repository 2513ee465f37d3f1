// Command intake is the daemon behind "upload straight to S3": presigned upload URLs, S3 event
// consumption and validation, records in PostgreSQL, and scheduled clean-up jobs. See the README.
package main

import (
	"os"

	"github.com/intakehq/intake/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
