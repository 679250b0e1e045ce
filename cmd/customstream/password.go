package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/customstream/customstream/internal/auth"
)

const passwordUsage = `Usage:
  customstream password      set a new random admin password and print it
  customstream password -    read the new admin password from the first line of standard input
`

// runPassword replaces the admin password stored in CUSTOMSTREAM_DATA_DIR.
// A running server uses it at the next login; every open session ends.
func runPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 1 || (len(args) == 1 && args[0] != "-") {
		fmt.Fprint(stderr, passwordUsage)
		return 2
	}
	cfg, ok := loadConfig(stderr)
	if !ok {
		return 2
	}
	if cfg.AdminPassword != "" {
		fmt.Fprintln(stderr, "customstream: CUSTOMSTREAM_ADMIN_PASSWORD is set and wins over a stored password; change it there")
		return 1
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		fmt.Fprintln(stderr, "customstream:", err)
		return 1
	}
	password := auth.NewSecret(15)
	if len(args) == 1 {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			fmt.Fprintln(stderr, "customstream: read the password:", err)
			return 1
		}
		password = strings.TrimRight(line, "\r\n")
	}
	if err := auth.SetPassword(cfg.DataDir, password); err != nil {
		fmt.Fprintln(stderr, "customstream:", err)
		return 1
	}
	if len(args) == 0 {
		fmt.Fprintf(stdout, "New password of user %s: %s\n", auth.AdminUser, password)
	} else {
		fmt.Fprintf(stdout, "Password of user %s changed.\n", auth.AdminUser)
	}
	fmt.Fprintln(stdout, "Every open portal session has ended; log in with the new password.")
	return 0
}
