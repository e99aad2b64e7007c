package broker

import (
	"log/slog"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc/codes"
)

// adminCodeLevel: a failed admin call is a warning, a successful one is
// info until adminCallLevel lowers the read-only ones.
func adminCodeLevel(c codes.Code) logging.Level {
	if c == codes.OK {
		return logging.LevelInfo
	}
	return logging.LevelWarn
}

// adminCallLevel is the level of one admin call's log line: lvl as
// adminCodeLevel chose it, lowered to debug for a successful read-only
// call. fields are the interceptor's key/value pairs.
//
// Read-only methods (by prefix) change nothing: their successful calls (a
// healthcheck's status every few seconds, listings, watches) are logged at
// debug, so the default log shows only changes and failures. A method not
// listed (a new mutation) stays at info.
func adminCallLevel(lvl logging.Level, fields []any) slog.Level {
	readOnlyPrefixes := [...]string{"Get", "List", "Watch", "Check"}
	if lvl != logging.LevelInfo {
		return slog.Level(lvl)
	}
	var service, method string
	for i := 0; i+1 < len(fields); i += 2 {
		switch fields[i] {
		case "grpc.service":
			service, _ = fields[i+1].(string)
		case "grpc.method":
			method, _ = fields[i+1].(string)
		}
	}
	if service == "grpc.health.v1.Health" || strings.HasPrefix(service, "grpc.reflection.") {
		return slog.LevelDebug
	}
	for _, p := range readOnlyPrefixes {
		if strings.HasPrefix(method, p) {
			return slog.LevelDebug
		}
	}
	return slog.LevelInfo
}
