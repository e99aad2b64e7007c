package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

func presetsCommand() *command {
	return &command{
		name:  "presets",
		usage: "presets [-q]",
		short: "List the policy presets the broker knows",
		long:  "Lists the presets a tenant socket can use: built into the broker or loaded from its configuration.",
		setup: func(fs *flag.FlagSet) runFunc {
			var quiet bool
			boolVarP(fs, &quiet, "quiet", "q", "print preset names only, one a line (takes precedence over -o json)")
			return func(ctx context.Context, c *cli, args []string) error {
				return c.runPresets(ctx, quiet, args)
			}
		},
	}
}

func (c *cli) runPresets(ctx context.Context, quiet bool, args []string) error {
	if err := wantArgs(args); err != nil {
		return err
	}
	var resp *sockguardv1.ListPresetsResponse
	err := c.call(ctx, func(ctx context.Context, api sockguardv1.SockguardServiceClient) (err error) {
		resp, err = api.ListPresets(ctx, &sockguardv1.ListPresetsRequest{})
		return err
	})
	if err != nil {
		return err
	}
	switch {
	case quiet:
		for _, p := range resp.GetPresets() {
			fmt.Fprintln(c.stdout, cell(p.GetName()))
		}
		return nil
	case c.jsonOutput():
		return c.printJSON(resp)
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "NAME\tBUILTIN\tDESCRIPTION")
	for _, p := range resp.GetPresets() {
		fmt.Fprintf(tw, "%s\t%t\t%s\n", cell(p.GetName()), p.GetBuiltin(), cell(p.GetDescription()))
	}
	return tw.Flush()
}

func presetCommand() *command {
	return &command{
		name:  "preset",
		usage: "preset NAME | preset validate FILE",
		short: "Print one preset's YAML source, or check a preset file",
		long: "Prints the YAML source of the preset NAME exactly as the broker holds it; with -o json, the whole preset as protojson.\n\n" +
			"'preset validate FILE' checks a preset file offline with the broker's parser and prints \"ok: preset NAME (N rules)\", " +
			"or the first error with its line number (exit 1). The preset is named by its name: key, else by the file name.",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error {
				return c.runPreset(ctx, args)
			}
		},
	}
}

func (c *cli) runPreset(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "validate" {
		return c.runPresetValidate(args[1:])
	}
	if err := wantArgs(args, "preset NAME"); err != nil {
		return err
	}
	var resp *sockguardv1.GetPresetResponse
	err := c.call(ctx, func(ctx context.Context, api sockguardv1.SockguardServiceClient) (err error) {
		resp, err = api.GetPreset(ctx, &sockguardv1.GetPresetRequest{Name: args[0]})
		return err
	})
	if err != nil {
		return err
	}
	if c.jsonOutput() {
		return c.printJSON(resp)
	}
	y := resp.GetPreset().GetYaml()
	if y != "" && !strings.HasSuffix(y, "\n") {
		y += "\n"
	}
	_, err = fmt.Fprint(c.stdout, text(y))
	return err
}
