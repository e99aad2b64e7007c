package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// testNow is the clock of every test invocation.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeBroker is an in-process SockguardService that records requests and
// answers from canned data.
type fakeBroker struct {
	sockguardv1.UnimplementedSockguardServiceServer

	// err, when set, is returned by every unary call.
	err error

	sockets  []*sockguardv1.Socket
	presets  []*sockguardv1.Preset
	denials  []*sockguardv1.Denial // newest first
	maxPage  int                   // server-side page cap; 0 means 1000
	watch    []*sockguardv1.Denial // sent by WatchDenials, then it waits
	checkFor func(*sockguardv1.CheckRequestRequest) *sockguardv1.CheckRequestResponse
	backup   []*sockguardv1.BackupStateResponse // sent by BackupState
	// midBackup, when set, runs before BackupState sends its last message.
	midBackup func()
	// upstreamDown: GetBrokerInfo says dockerd does not answer.
	upstreamDown bool

	mu   sync.Mutex // guards reqs
	reqs []proto.Message
}

var _ sockguardv1.SockguardServiceServer = (*fakeBroker)(nil)

func (f *fakeBroker) record(m proto.Message) error {
	f.mu.Lock()
	f.reqs = append(f.reqs, proto.Clone(m))
	f.mu.Unlock()
	return f.err
}

// requests returns the recorded requests of type T.
func requests[T proto.Message](f *fakeBroker) []T {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []T
	for _, m := range f.reqs {
		if t, ok := m.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

func (f *fakeBroker) CreateSocket(_ context.Context, req *sockguardv1.CreateSocketRequest) (*sockguardv1.CreateSocketResponse, error) {
	if err := f.record(req); err != nil {
		return nil, err
	}
	s := proto.Clone(req.GetSocket()).(*sockguardv1.Socket)
	s.Path = "/run/sockguard/" + s.GetName() + "/sockguard.sock"
	s.TenantId = "t-0001"
	s.State = sockguardv1.SocketState_SOCKET_STATE_SERVING
	if s.FileMode == 0 {
		s.FileMode = 0o660
	}
	return &sockguardv1.CreateSocketResponse{Socket: s}, nil
}

func (f *fakeBroker) findSocket(name string) (*sockguardv1.Socket, error) {
	for _, s := range f.sockets {
		if s.GetName() == name {
			return s, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "socket %q not found", name)
}

func (f *fakeBroker) GetSocket(_ context.Context, req *sockguardv1.GetSocketRequest) (*sockguardv1.GetSocketResponse, error) {
	if err := f.record(req); err != nil {
		return nil, err
	}
	s, err := f.findSocket(req.GetName())
	if err != nil {
		return nil, err
	}
	return &sockguardv1.GetSocketResponse{Socket: s}, nil
}

func (f *fakeBroker) ListSockets(_ context.Context, req *sockguardv1.ListSocketsRequest) (*sockguardv1.ListSocketsResponse, error) {
	if err := f.record(req); err != nil {
		return nil, err
	}
	return &sockguardv1.ListSocketsResponse{Sockets: f.sockets}, nil
}

func (f *fakeBroker) UpdateSocket(_ context.Context, req *sockguardv1.UpdateSocketRequest) (*sockguardv1.UpdateSocketResponse, error) {
	if err := f.record(req); err != nil {
		return nil, err
	}
	s, err := f.findSocket(req.GetSocket().GetName())
	if err != nil {
		return nil, err
	}
	return &sockguardv1.UpdateSocketResponse{Socket: s}, nil
}

func (f *fakeBroker) DeleteSocket(_ context.Context, req *sockguardv1.DeleteSocketRequest) (*sockguardv1.DeleteSocketResponse, error) {
	if err := f.record(req); err != nil {
		return nil, err
	}
	if _, err := f.findSocket(req.GetName()); err != nil {
		return nil, err
	}
	return &sockguardv1.DeleteSocketResponse{
		Owned:  &sockguardv1.OwnedObjects{Containers: 2, Networks: 1, Volumes: 3},
		Purged: req.GetPurge(),
	}, nil
}

func (f *fakeBroker) ListPresets(_ context.Context, req *sockguardv1.ListPresetsRequest) (*sockguardv1.ListPresetsResponse, error) {
	if err := f.record(req); err != nil {
		return nil, err
	}
	return &sockguardv1.ListPresetsResponse{Presets: f.presets}, nil
}

func (f *fakeBroker) GetPreset(_ context.Context, req *sockguardv1.GetPresetRequest) (*sockguardv1.GetPresetResponse, error) {
	if err := f.record(req); err != nil {
		return nil, err
	}
	for _, p := range f.presets {
		if p.GetName() == req.GetName() {
			return &sockguardv1.GetPresetResponse{Preset: p}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "preset %q not found", req.GetName())
}

func (f *fakeBroker) CheckRequest(_ context.Context, req *sockguardv1.CheckRequestRequest) (*sockguardv1.CheckRequestResponse, error) {
	if err := f.record(req); err != nil {
		return nil, err
	}
	return f.checkFor(req), nil
}

// ListDenials pages f.denials; the page token is the offset.
func (f *fakeBroker) ListDenials(_ context.Context, req *sockguardv1.ListDenialsRequest) (*sockguardv1.ListDenialsResponse, error) {
	if err := f.record(req); err != nil {
		return nil, err
	}
	off := 0
	if req.GetPageToken() != "" {
		var err error
		if off, err = strconv.Atoi(req.GetPageToken()); err != nil {
			return nil, status.Error(codes.InvalidArgument, "bad page token")
		}
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = 100
	}
	if f.maxPage > 0 && size > f.maxPage {
		size = f.maxPage
	}
	end := min(off+size, len(f.denials))
	resp := &sockguardv1.ListDenialsResponse{Denials: f.denials[off:end]}
	if end < len(f.denials) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return resp, nil
}

func (f *fakeBroker) WatchDenials(req *sockguardv1.WatchDenialsRequest, stream grpc.ServerStreamingServer[sockguardv1.WatchDenialsResponse]) error {
	if err := f.record(req); err != nil {
		return err
	}
	for _, d := range f.watch {
		if err := stream.Send(&sockguardv1.WatchDenialsResponse{Denial: d}); err != nil {
			return err
		}
	}
	<-stream.Context().Done()
	return nil
}

func (f *fakeBroker) BackupState(req *sockguardv1.BackupStateRequest, stream grpc.ServerStreamingServer[sockguardv1.BackupStateResponse]) error {
	if err := f.record(req); err != nil {
		return err
	}
	for i, m := range f.backup {
		if i == len(f.backup)-1 && f.midBackup != nil {
			f.midBackup()
		}
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeBroker) GetBrokerInfo(_ context.Context, req *sockguardv1.GetBrokerInfoRequest) (*sockguardv1.GetBrokerInfoResponse, error) {
	if err := f.record(req); err != nil {
		return nil, err
	}
	return &sockguardv1.GetBrokerInfoResponse{
		Version:           "v0.1.0-test",
		Upstream:          "unix:///var/run/docker.sock",
		UpstreamReachable: !f.upstreamDown,
		UpstreamVersion:   "27.1.1",
		StartTime:         timestamppb.New(testNow.Add(-time.Hour)),
		SocketCount:       uint32(len(f.sockets)),
		AdminSocket:       "/run/sockguard/admin.sock",
	}, nil
}

// shortTempDir returns a directory whose socket paths stay under the 108
// byte limit of sun_path (t.TempDir can be longer).
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "sgctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startBroker serves f on a fresh unix socket and returns its path.
func startBroker(t *testing.T, f *fakeBroker) string {
	t.Helper()
	path := filepath.Join(shortTempDir(t), "admin.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	sockguardv1.RegisterSockguardServiceServer(srv, f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return path
}

type result struct {
	code           int
	stdout, stderr string
}

// sgctl runs one invocation against the admin socket sock.
func sgctl(t *testing.T, sock string, args ...string) result {
	t.Helper()
	return sgctlStdin(t, sock, "", args...)
}

func sgctlStdin(t *testing.T, sock, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := &cli{
		stdin:  strings.NewReader(stdin),
		stdout: &stdout,
		stderr: &stderr,
		getenv: func(string) string { return "" },
		now:    func() time.Time { return testNow },
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := c.main(ctx, append([]string{"--admin-socket", sock, "--timeout", "5s"}, args...))
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}
