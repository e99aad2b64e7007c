package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// checkTopMounts judges the image mounts of a decoded container create
// body (Mounts[] of Type "image", API 1.48 and later), in HostConfig and in
// the deprecated top-level host config fields dockerd still reads when
// HostConfig is absent: their Source names an image whose filesystem
// dockerd mounts into the container, so it is held to the same ownership
// rule as the Image field. Each source is replaced by the id that was
// checked, never forwarded as the tenant's text; it reports whether top
// changed. The body has passed strict decoding: at most one key per name
// under case folding, the one dockerd reads.
func (g *imageGuard) checkTopMounts(ctx context.Context, tenant string, top map[string]json.RawMessage) (bool, error) {
	changed, err := g.checkMountList(ctx, tenant, top, "")
	if err != nil {
		return false, err
	}
	if hk := foldKey(top, "HostConfig"); hk != "" && !isJSONNull(top[hk]) {
		var hc map[string]json.RawMessage
		if err := json.Unmarshal(top[hk], &hc); err != nil || hc == nil {
			return false, errAmbiguous("HostConfig is not a JSON object")
		}
		hcChanged, err := g.checkMountList(ctx, tenant, hc, "HostConfig.")
		if err != nil {
			return false, err
		}
		if hcChanged {
			raw, err := json.Marshal(hc)
			if err != nil {
				return false, err
			}
			top[hk] = raw
			changed = true
		}
	}
	return changed, nil
}

// checkMountList checks and rewrites, in place, the image mounts of the
// Mounts member of obj (a create body or its HostConfig); prefix names obj
// in errors. It reports whether obj changed.
func (g *imageGuard) checkMountList(ctx context.Context, tenant string, obj map[string]json.RawMessage, prefix string) (bool, error) {
	mk := foldKey(obj, "Mounts")
	if mk == "" || isJSONNull(obj[mk]) {
		return false, nil
	}
	var mounts []map[string]json.RawMessage
	if err := json.Unmarshal(obj[mk], &mounts); err != nil {
		return false, errAmbiguous(prefix + "Mounts is not an array of objects")
	}
	changed := false
	for i, m := range mounts {
		var typ, src string
		if k := foldKey(m, "Type"); k != "" {
			if err := json.Unmarshal(m[k], &typ); err != nil {
				return false, errAmbiguous(fmt.Sprintf("%sMounts[%d].Type is not a string", prefix, i))
			}
		}
		if !strings.EqualFold(typ, "image") {
			continue
		}
		sk := foldKey(m, "Source")
		if sk != "" {
			if err := json.Unmarshal(m[sk], &src); err != nil {
				return false, errAmbiguous(fmt.Sprintf("%sMounts[%d].Source is not a string", prefix, i))
			}
		}
		if src == "" {
			continue // dockerd refuses an image mount without a source
		}
		id, err := g.checkRef(ctx, opOther, tenant, src)
		if err != nil {
			return false, err
		}
		raw, err := json.Marshal(id)
		if err != nil {
			return false, err
		}
		m[sk] = raw
		changed = true
	}
	if changed {
		raw, err := json.Marshal(mounts)
		if err != nil {
			return false, err
		}
		obj[mk] = raw
	}
	return changed, nil
}

// foldKey returns the key of m that equals name under case folding, as
// encoding/json matches it ("" when there is none).
func foldKey(m map[string]json.RawMessage, name string) string {
	if _, ok := m[name]; ok {
		return name
	}
	for k := range m {
		if strings.EqualFold(k, name) {
			return k
		}
	}
	return ""
}

func isJSONNull(raw json.RawMessage) bool { return strings.TrimSpace(string(raw)) == "null" }
