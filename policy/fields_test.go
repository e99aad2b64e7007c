package policy

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"

	// Test-only: the Docker API's Go types (API 1.51, dockerd 28.5) are the
	// reference the field table is held against. The policy package itself
	// never imports them.
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
)

// dockerBodyTypes maps each body the table classifies to the type dockerd
// decodes it into.
func dockerBodyTypes() map[BodyKind]reflect.Type {
	return map[BodyKind]reflect.Type{
		BodyContainerCreate:   reflect.TypeFor[container.CreateRequest](),
		BodyContainerUpdate:   reflect.TypeFor[container.UpdateConfig](),
		BodyExecCreate:        reflect.TypeFor[container.ExecOptions](),
		BodyExecStart:         reflect.TypeFor[container.ExecStartOptions](),
		BodyVolumeCreate:      reflect.TypeFor[volume.CreateOptions](),
		BodyNetworkCreate:     reflect.TypeFor[network.CreateRequest](),
		BodyNetworkConnect:    reflect.TypeFor[network.ConnectOptions](),
		BodyNetworkDisconnect: reflect.TypeFor[network.DisconnectOptions](),
	}
}

// typePaths lists every JSON path of t the way encoding/json reads it, with
// the table's notation and kinds. Scalar array elements and scalar map
// entries are implicit, as in the table.
func typePaths(t *testing.T, typ reflect.Type) map[string]valueKind {
	out := map[string]valueKind{}
	var walk func(typ reflect.Type, prefix string)
	var fields func(typ reflect.Type, prefix string, seen map[string]string)
	fields = func(typ reflect.Type, prefix string, seen map[string]string) {
		for i := 0; i < typ.NumField(); i++ {
			sf := typ.Field(i)
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			ft := sf.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if sf.Anonymous && name == "" && ft.Kind() == reflect.Struct {
				fields(ft, prefix, seen) // embedded: its fields are promoted
				continue
			}
			if !sf.IsExported() {
				continue
			}
			if name == "" {
				name = sf.Name
			}
			if prev, dup := seen[foldKey(name)]; dup {
				t.Fatalf("%s: %s and %s collide; the reflection walk needs encoding/json's depth rules", prefix, prev, name)
			}
			seen[foldKey(name)] = name
			walk(sf.Type, prefix+name)
		}
	}
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if typ.Name() == "StrSlice" {
			out[path] = kStrSlice
			return
		}
		if reflect.PointerTo(typ).Implements(reflect.TypeFor[json.Unmarshaler]()) {
			t.Fatalf("%s: %v has its own JSON decoding; classify its shapes by hand", path, typ)
		}
		switch typ.Kind() {
		case reflect.Struct:
			if path != "" {
				out[path] = kObject
				path += "."
			}
			fields(typ, path, map[string]string{})
		case reflect.Map:
			out[path] = kMap
			if k := elemKind(typ.Elem()); k != kScalar {
				walk(typ.Elem(), path+".*")
			}
		case reflect.Slice, reflect.Array:
			out[path] = kArray
			if k := elemKind(typ.Elem()); k != kScalar {
				walk(typ.Elem(), path+".[]")
			}
		case reflect.Interface, reflect.Func, reflect.Chan:
			t.Fatalf("%s: %v cannot be classified", path, typ)
		default:
			out[path] = kScalar
		}
	}
	walk(typ, "")
	return out
}

func elemKind(typ reflect.Type) valueKind {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch typ.Kind() {
	case reflect.Struct, reflect.Map, reflect.Slice, reflect.Array:
		return kObject
	}
	return kScalar
}

// TestFieldTableMatchesDockerTypes holds the table against the Docker API
// types: every JSON field dockerd decodes has a row (a field under a
// refused row is covered by it), with the right shape, and every row that
// is not marked Legacy exists in the types. A Legacy row must not exist
// there (else it is simply current).
func TestFieldTableMatchesDockerTypes(t *testing.T) {
	for body, typ := range dockerBodyTypes() {
		t.Run(string(body), func(t *testing.T) {
			rows := map[string]Field{}
			for _, f := range fieldsOf(body) {
				if _, dup := rows[f.Path]; dup {
					t.Errorf("row %s is listed twice", f.Path)
				}
				rows[f.Path] = f
			}
			refusedAbove := func(p string) bool {
				segs := strings.Split(p, ".")
				for i := 1; i < len(segs); i++ {
					if f, ok := rows[strings.Join(segs[:i], ".")]; ok && f.Class == FieldRefused {
						return true
					}
				}
				return false
			}
			have := typePaths(t, typ)
			var missing []string
			for p, k := range have {
				if refusedAbove(p) {
					continue
				}
				f, ok := rows[p]
				if !ok {
					missing = append(missing, p)
					continue
				}
				if f.kind != k {
					t.Errorf("row %s has shape %v, dockerd decodes %v", p, f.kind, k)
				}
			}
			sort.Strings(missing)
			for _, p := range missing {
				t.Errorf("%s: unclassified field %s (add a row to policy/fields.go)", body, p)
			}
			for p, f := range rows {
				_, ok := have[p]
				switch {
				case (f.Legacy || f.Newer) && ok:
					t.Errorf("row %s is marked Legacy or Newer but the types have it", p)
				case !f.Legacy && !f.Newer && !ok:
					t.Errorf("row %s is not in the Docker API types (mark it Legacy or Newer if another API version has it)", p)
				}
				if f.Class < FieldSafe || f.Class > FieldRefused {
					t.Errorf("row %s is unclassified", p)
				}
				if f.Why == "" {
					t.Errorf("row %s gives no reason", p)
				}
				if (f.Class == FieldJudged || f.Class == FieldRefused) && f.Rule == "" {
					t.Errorf("row %s is %v but names no rule", p, f.Class)
				}
				if f.Class == FieldReference && f.Refers == "" {
					t.Errorf("row %s is a reference to nothing", p)
				}
			}
		})
	}
}

// TestFieldTableCompiles builds every body's tree (compileFields panics on a
// row without its parent).
func TestFieldTableCompiles(t *testing.T) {
	for _, b := range BodyKinds() {
		if schemaFor(b) == nil {
			t.Fatalf("%s: no schema", b)
		}
	}
	seen := map[BodyKind]bool{}
	for _, f := range FieldTable() {
		seen[f.Body] = true
	}
	if len(seen) != len(BodyKinds()) {
		t.Fatalf("FieldTable covers %d bodies, want %d", len(seen), len(BodyKinds()))
	}
}
