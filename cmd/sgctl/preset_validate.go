package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sockguard/sockguard/policy"
	"go.yaml.in/yaml/v3"
)

// runPresetValidate is `sgctl preset validate FILE`: it parses a preset file
// offline, with the broker's own parser, and never contacts the broker.
func (c *cli) runPresetValidate(args []string) error {
	if err := wantArgs(args, "FILE"); err != nil {
		return err
	}
	file := args[0]
	src, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	name := presetNameFor(file, src)
	p, err := policy.ParsePreset(name, src)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	_, err = fmt.Fprintf(c.stdout, "ok: preset %s (%d rules)\n", cell(p.Name), p.NumRules())
	return err
}

// presetNameFor is the document's own name, else the file name without its
// .yaml or .yml extension (the broker names operator presets after their file).
func presetNameFor(file string, src []byte) string {
	var doc struct {
		Name string `yaml:"name"`
	}
	// A document that does not decode is reported by ParsePreset, with its line.
	if yaml.Unmarshal(src, &doc) == nil && doc.Name != "" {
		return doc.Name
	}
	base := filepath.Base(file)
	for _, ext := range []string{".yaml", ".yml"} {
		if n, ok := strings.CutSuffix(base, ext); ok {
			return n
		}
	}
	return base
}
