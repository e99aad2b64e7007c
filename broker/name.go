package broker

import "fmt"

// maxNameLen is the longest tenant socket name accepted.
const maxNameLen = 63

// validateName checks a tenant socket name before it touches the
// filesystem: 1-63 characters of [a-z0-9._-], starting with [a-z0-9]. The
// rules exclude "/", "..", "." and anything a shell or path would interpret.
func validateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: socket name is empty", ErrInvalidArgument)
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("%w: socket name %s is longer than %d characters", ErrInvalidArgument, quoteBounded(name), maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '_' || c == '.') && i > 0:
		default:
			return fmt.Errorf("%w: socket name %s is invalid: use 1-%d lowercase letters, digits, '-', '_' or '.', starting with a letter or digit", ErrInvalidArgument, quoteBounded(name), maxNameLen)
		}
	}
	return nil
}
