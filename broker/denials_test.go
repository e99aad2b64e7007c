package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/sockguard/sockguard/broker/denylog"
	"github.com/sockguard/sockguard/broker/store"
	"github.com/sockguard/sockguard/policy"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

func openTestStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func appendDenials(t *testing.T, s *store.Store, recs []store.Denial) {
	t.Helper()
	for len(recs) > 0 {
		n := min(len(recs), 300)
		if _, err := s.AppendDenials(recs[:n], store.DenialRetention{}); err != nil {
			t.Fatal(err)
		}
		recs = recs[n:]
	}
}

// One stored record that does not decode is skipped and counted by the
// service's list; the rest are answered.
func TestListDenialsSkipsBadRecords(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var recs []store.Denial
	for i := range 10 {
		recs = append(recs, store.Denial{Time: time.Now(), Socket: "a", TenantID: "id-a", Method: "POST",
			Path: fmt.Sprintf("/x/%d", i), Code: policy.ReasonRuleDenied, Reason: "r", Mode: ModeEnforce})
	}
	appendDenials(t, s, recs)
	s.Close()
	// Damage record 5 in the file (the denials bucket is keyed by the
	// big-endian id: see package store).
	db, err := bolt.Open(filepath.Join(dir, "state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("denials")).Put([]byte{0, 0, 0, 0, 0, 0, 0, 5}, []byte("{not json"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if s, err = store.Open(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	l := denylog.New(s, slog.New(slog.NewTextHandler(io.Discard, nil)), denylog.Config{})
	svc := &service{b: &Broker{store: s, denials: l}}
	resp, err := svc.ListDenials(context.Background(), &sockguardv1.ListDenialsRequest{})
	if err != nil || len(resp.GetDenials()) != 9 || l.Undecodable() != 1 {
		t.Fatalf("service list: %d records, %d undecodable, %v", len(resp.GetDenials()), l.Undecodable(), err)
	}
}

// A page of the largest records stays under the page bound.
func TestListDenialsPageBytes(t *testing.T) {
	s := openTestStore(t)
	huge := strings.Repeat("\x01é", 1<<19)
	l := denylog.New(s, slog.New(slog.NewTextHandler(io.Discard, nil)), denylog.Config{})
	d := store.Denial{Time: time.Now(), Socket: huge, TenantID: huge, RequestID: huge, Method: huge,
		Path: huge, RawTarget: store.SafeTarget("/" + huge + "?name=" + huge), Reason: huge, Rule: huge, Mode: Mode(huge),
		Subject: &store.DenialSubject{Field: huge, Value: huge, AllowSection: huge, AllowSetting: huge, AllowValue: huge, AllowMethod: huge, AllowPath: huge}}
	recs := make([]store.Denial, 1500)
	for i := range recs {
		recs[i] = d // AppendDenials bounds them
	}
	appendDenials(t, s, recs)
	svc := &service{b: &Broker{store: s, denials: l}}
	req := &sockguardv1.ListDenialsRequest{PageSize: 1000}
	total := 0
	for {
		resp, err := svc.ListDenials(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if n := proto.Size(resp); n > listPageBytes {
			t.Fatalf("page of %d bytes", n)
		}
		if len(resp.GetDenials()) >= 1000 {
			t.Fatalf("a page of %d records: the byte bound did not end it", len(resp.GetDenials()))
		}
		total += len(resp.GetDenials())
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if total != 1500 {
		t.Fatalf("paged through %d of 1500", total)
	}
}
