package main

import (
	"context"
	"errors"
	"fmt"
)

// runDeleteSockets deletes each named socket in turn with
// runDeleteSocket, which reports it. A failure is reported with the name
// and does not stop the rest; the exit status is 1 if any failed.
func (c *cli) runDeleteSockets(ctx context.Context, o *deleteOptions, names []string) error {
	if len(names) <= 1 {
		return c.runDeleteSocket(ctx, o, names)
	}
	failed := 0
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		if ctx.Err() != nil {
			fmt.Fprintf(c.stderr, "sgctl: %s: not deleted: interrupted\n", cell(name))
			failed++
			continue
		}
		err := c.runDeleteSocket(ctx, o, []string{name})
		var code exitCodeError
		switch {
		case err == nil:
		case errors.As(err, &code):
			failed++ // already reported
		default:
			fmt.Fprintf(c.stderr, "sgctl: %s: %s\n", cell(name), oneLine(err.Error()))
			failed++
		}
	}
	if failed > 0 {
		if failed > 1 || len(seen) > 1 {
			fmt.Fprintf(c.stderr, "sgctl: %d of %d sockets not deleted\n", failed, len(seen))
		}
		return exitCodeError(exitFailure)
	}
	return nil
}
