package policy

import (
	"bytes"
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// The few exports policy/suggest needs to write a preset from a base one:
// the base's document, where a rule would go, and whether a setting value
// is one ParsePreset accepts.

// PresetDoc is a preset's YAML document as written, before compilation.
type PresetDoc = presetDoc

// Doc decodes the preset's YAML source (strictly, as ParsePreset does).
func (p *Preset) Doc() (*PresetDoc, error) {
	var doc presetDoc
	dec := yaml.NewDecoder(bytes.NewReader(p.Source))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("preset %q: %w", p.Name, err)
	}
	return &doc, nil
}

// ValidPresetName reports whether name may name a preset.
func ValidPresetName(name string) bool { return validPresetName(name) }

// FirstRule returns the index of the first rule matching method and the
// canonical path, and whether it denies; index -1 when none matches (the
// default deny).
func (p *Preset) FirstRule(method, path string) (index int, deny bool) {
	var buf [32]string
	i, _ := p.firstMatch(method, appendSegments(buf[:0], path))
	if i < 0 {
		return -1, false
	}
	return i, p.rules[i].deny
}

// CheckSetting returns nil when a is a setting allowance that ParsePreset
// accepts exactly as written: a boolean setting set to "true" or "false",
// daemon_socket_bind set to deny or rewrite, or one entry of a list setting
// in its canonical spelling (a clean bind root, an upper-case capability
// without CAP_, a lower-case registry host; no wildcards). Top-level
// settings (max_body_bytes, min_api_version) are not checked here.
func CheckSetting(a Allowance) error {
	if a.Kind != AllowanceSetting {
		return errors.New("not a setting allowance")
	}
	var doc presetDoc
	c := &doc.Container
	bools := map[string]*bool{
		"container.allow_privileged":          &c.AllowPrivileged,
		"container.allow_volumes_from":        &c.AllowVolumesFrom,
		"container.allow_links":               &c.AllowLinks,
		"container.require_non_root":          &c.RequireNonRoot,
		"container.require_read_only_rootfs":  &c.RequireReadOnlyRootfs,
		"container.require_no_new_privileges": &c.RequireNoNewPrivileges,
		"container.require_memory_limit":      &c.RequireMemoryLimit,
		"container.require_cpu_limit":         &c.RequireCPULimit,
		"container.require_pids_limit":        &c.RequirePidsLimit,
		"exec.allow_privileged":               &doc.Exec.AllowPrivileged,
		"exec.require_non_root":               &doc.Exec.RequireNonRoot,
		"images.allow_import":                 &doc.Images.AllowImport,
		"network.allow_custom_ipam":           &doc.Network.AllowCustomIPAM,
		"network.allow_options":               &doc.Network.AllowOptions,
		"build.allow_remote_context":          &doc.Build.AllowRemoteContext,
		"build.allow_host_network":            &doc.Build.AllowHostNetwork,
	}
	lists := map[string]*[]string{
		"container.allowed_capabilities": &c.AllowedCapabilities,
		"container.allowed_runtimes":     &c.AllowedRuntimes,
		"container.allowed_log_drivers":  &c.AllowedLogDrivers,
		"images.allowed_registries":      &doc.Images.AllowedRegistries,
		"volumes.allowed_drivers":        &doc.Volumes.AllowedDrivers,
		"network.allowed_drivers":        &doc.Network.AllowedDrivers,
	}
	key, v := a.Section+"."+a.Setting, a.Value
	switch {
	case bools[key] != nil:
		if v != "true" && v != "false" {
			return fmt.Errorf("%s: %q is not true or false", key, v)
		}
		*bools[key] = v == "true"
	case lists[key] != nil:
		*lists[key] = []string{v}
		canonical := v != ""
		switch key {
		case "container.allowed_capabilities":
			canonical = normalizeCap(v) == v
		case "images.allowed_registries":
			canonical = validRegistryHost(v) // an exact host: never a wildcard
		}
		if !canonical {
			return fmt.Errorf("%s: %q is not in canonical form", key, v)
		}
	case key == "container.allowed_bind_roots":
		if root, err := cleanBindRoot(v); err != nil || root != v {
			return fmt.Errorf("%s: %q is not a clean bind root", key, v)
		}
		c.AllowedBindRoots = []bindRootDoc{{Path: v}}
	case key == "container.daemon_socket_bind":
		c.DaemonSocketBind = v
		if v == "" {
			return fmt.Errorf("%s: empty", key)
		}
	default:
		return fmt.Errorf("unknown setting %q", key)
	}
	var p Preset
	return p.compileRails(&doc)
}
