package broker

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// maxPresetFileBytes bounds one file of --preset-dir.
const maxPresetFileBytes = 1 << 20

// readRegularFile reads a configuration file of at most max bytes. It
// must be a regular file (after symlinks): a FIFO or a device in a
// configuration directory would hang a reload or feed it without end. The
// open does not block, so a FIFO is refused rather than waited on.
func readRegularFile(file string, max int64) ([]byte, error) {
	f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file (%s)", ErrInvalidArgument, file, fi.Mode().Type())
	}
	src, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(src)) > max {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalidArgument, file, max)
	}
	return src, nil
}
