package docker

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestEvents(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream string
		want   []string // Action/ID/name of the events read before the error
	}{
		{"events then the end of the stream",
			`{"Type":"container","Action":"create","Actor":{"ID":"c1","Attributes":{"name":"web"}}}` + "\n" +
				`{"Type":"container","Action":"rename","Actor":{"ID":"c1","Attributes":{"name":"web2","oldName":"/web"}}}`,
			[]string{"create/c1/web", "rename/c1/web2"}},
		{"an event over the bound",
			`{"Type":"container","Action":"create","Actor":{"ID":"c1","Attributes":{"name":"web"}}}` + "\n" +
				`{"Type":"container","Action":"create","Actor":{"ID":"c2","Attributes":{"l":"` + strings.Repeat("x", 2*maxEvent) + `"}}}`,
			[]string{"create/c1/web"}},
		{"malformed", `{"Type":`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var query string
			c := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/events" {
					http.NotFound(w, r)
					return
				}
				query = r.URL.Query().Get("filters")
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write([]byte(tc.stream))
			})
			s, err := c.Events(context.Background(), `{"type":["container"]}`)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var got []string
			for {
				ev, err := s.Next()
				if err != nil {
					if !errors.Is(err, ErrUnreachable) {
						t.Errorf("stream error %v, want ErrUnreachable (the stream can no longer be trusted)", err)
					}
					break
				}
				got = append(got, ev.Action+"/"+ev.Actor.ID+"/"+ev.Actor.Attributes["name"])
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("events %v, want %v", got, tc.want)
			}
			if query != `{"type":["container"]}` {
				t.Errorf("filters %q", query)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		c := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
		if _, err := c.Events(context.Background(), ""); !errors.Is(err, ErrNotFound) {
			t.Errorf("Events on a daemon without /events: %v", err)
		}
	})
}
