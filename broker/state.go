package broker

import (
	"fmt"

	"github.com/sockguard/sockguard/broker/store"
	"github.com/sockguard/sockguard/policy"
)

// CheckState checks a stopped broker's state directory the way a start
// would, without changing anything (see store.Check): every tenant record
// is also held to create-socket's rules and, when catalog is set, to its
// presets, as the registry holds it at start.
func CheckState(dir string, catalog *policy.Catalog) (*store.CheckReport, error) {
	return store.Check(dir, func(t *Tenant) error {
		if err := validateStored(t); err != nil {
			return err
		}
		if catalog != nil {
			if _, err := catalog.Get(t.Preset); err != nil {
				return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
			}
		}
		return nil
	})
}
