package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// checkImageMounts judges the image mounts of a container create body
// (HostConfig.Mounts[] of Type "image", API 1.48 and later): their Source
// names an image whose filesystem dockerd mounts into the container, so it
// is held to the same ownership rule as the Image field. Each source is
// replaced by the id that was checked, never forwarded as the tenant's text.
// The body has passed strict decoding: at most one key per name under case
// folding, the one dockerd reads.
func (g *imageGuard) checkImageMounts(ctx context.Context, tenant string, body []byte) ([]byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, errAmbiguous("container create body is not a JSON object")
	}
	hk := foldKey(top, "HostConfig")
	if hk == "" || isJSONNull(top[hk]) {
		return body, nil
	}
	var hc map[string]json.RawMessage
	if err := json.Unmarshal(top[hk], &hc); err != nil || hc == nil {
		return nil, errAmbiguous("HostConfig is not a JSON object")
	}
	mk := foldKey(hc, "Mounts")
	if mk == "" || isJSONNull(hc[mk]) {
		return body, nil
	}
	var mounts []map[string]json.RawMessage
	if err := json.Unmarshal(hc[mk], &mounts); err != nil {
		return nil, errAmbiguous("HostConfig.Mounts is not an array of objects")
	}
	changed := false
	for i, m := range mounts {
		var typ, src string
		if k := foldKey(m, "Type"); k != "" {
			if err := json.Unmarshal(m[k], &typ); err != nil {
				return nil, errAmbiguous(fmt.Sprintf("HostConfig.Mounts[%d].Type is not a string", i))
			}
		}
		if !strings.EqualFold(typ, "image") {
			continue
		}
		sk := foldKey(m, "Source")
		if sk != "" {
			if err := json.Unmarshal(m[sk], &src); err != nil {
				return nil, errAmbiguous(fmt.Sprintf("HostConfig.Mounts[%d].Source is not a string", i))
			}
		}
		if src == "" {
			continue // dockerd refuses an image mount without a source
		}
		id, err := g.checkRef(ctx, opOther, tenant, src)
		if err != nil {
			return nil, err
		}
		raw, err := json.Marshal(id)
		if err != nil {
			return nil, err
		}
		m[sk] = raw
		changed = true
	}
	if !changed {
		return body, nil
	}
	raw, err := json.Marshal(mounts)
	if err != nil {
		return nil, err
	}
	hc[mk] = raw
	if raw, err = json.Marshal(hc); err != nil {
		return nil, err
	}
	top[hk] = raw
	return json.Marshal(top)
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
