package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
)

func versionCommand() *command {
	return &command{
		name:  "version",
		usage: "version",
		short: "Print the sgctl version and, if reachable, the broker's",
		long:  "Prints the client version, then asks the broker for its version. A broker that cannot be reached is reported, not treated as an error.",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error {
				return c.runVersion(ctx, args)
			}
		},
	}
}

func (c *cli) runVersion(ctx context.Context, args []string) error {
	if err := wantArgs(args); err != nil {
		return err
	}
	info, infoErr := c.brokerInfo(ctx)
	if c.jsonOutput() {
		// No API message holds both versions: {"client": {"version": ...},
		// "broker": <GetBrokerInfoResponse>} or "brokerError" instead.
		doc := mappingNode("client", mappingNode("version", strNode(version)))
		if infoErr != nil {
			doc.Content = append(doc.Content, strNode("brokerError"), strNode(infoErr.Error()))
		} else {
			b, err := structuredNode(info)
			if err != nil {
				return err
			}
			doc.Content = append(doc.Content, strNode("broker"), b)
		}
		return c.printNode(doc, true)
	}
	fmt.Fprintf(c.stdout, "client: %s\n", version)
	switch {
	case errors.Is(infoErr, errUnreachable):
		_, err := fmt.Fprintf(c.stdout, "broker: not reachable (%s)\n", oneLine(infoErr.Error()))
		return err
	case infoErr != nil:
		_, err := fmt.Fprintf(c.stdout, "broker: unknown (%s)\n", oneLine(infoErr.Error()))
		return err
	}
	_, err := fmt.Fprintf(c.stdout, "broker: %s\n", cell(info.GetVersion()))
	return err
}
