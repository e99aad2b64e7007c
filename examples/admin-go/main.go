// Command admin-go shows how automation drives the sockguard broker over its
// gRPC admin API, with the generated client and no sgctl: it lists the
// tenant sockets, creates one if it is missing, dry-runs a privileged
// container create against it, and prints the last denials.
//
//	sudo go run ./examples/admin-go -admin-socket /run/sockguard/admin.sock
//
// The admin socket answers root and members of the broker's --admin-group
// only; the broker identifies the caller from the socket (SO_PEERCRED), so
// there are no credentials to pass.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// privilegedCreate is the body `docker run --privileged alpine` sends.
const privilegedCreate = `{"Image":"alpine","Cmd":["true"],"HostConfig":{"Privileged":true}}`

func main() {
	adminSocket := flag.String("admin-socket", "/run/sockguard/admin.sock", "the broker's admin socket `path`")
	name := flag.String("socket", "automation-demo", "tenant socket `name` to ensure")
	preset := flag.String("preset", "github-actions-runner", "preset for a newly created socket")
	flag.Parse()
	log.SetFlags(0)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := run(ctx, *adminSocket, *name, *preset); err != nil {
		log.Fatalf("admin-go: %v", err)
	}
}

func run(ctx context.Context, adminSocket, name, preset string) error {
	// The admin socket is local: its file mode and the broker's peer
	// credential check protect it, so there is no transport security to add.
	// grpc.NewClient does not connect yet; the first call does.
	conn, err := grpc.NewClient("unix://"+adminSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("admin socket %s: %w", adminSocket, err)
	}
	defer conn.Close()
	api := sockguardv1.NewSockguardServiceClient(conn)

	// 1. List the tenant sockets.
	list, err := api.ListSockets(ctx, &sockguardv1.ListSocketsRequest{})
	if err != nil {
		return fmt.Errorf("list sockets: %w", err)
	}
	fmt.Printf("%d socket(s):\n", len(list.GetSockets()))
	for _, s := range list.GetSockets() {
		fmt.Printf("  %-20s %-24s %-8s allowed=%d denied=%d\n", s.GetName(), s.GetPreset(),
			stateName(s.GetState()), s.GetCounters().GetRequestsAllowed(), s.GetCounters().GetRequestsDenied())
	}

	// 2. Create the socket unless it exists. GetSocket answers NotFound for
	// a missing socket; CreateSocket answers AlreadyExists if another
	// client created it in between, which is fine too.
	_, err = api.GetSocket(ctx, &sockguardv1.GetSocketRequest{Name: name})
	switch status.Code(err) {
	case codes.OK:
		fmt.Printf("socket %s exists\n", name)
	case codes.NotFound:
		resp, err := api.CreateSocket(ctx, &sockguardv1.CreateSocketRequest{Socket: &sockguardv1.Socket{
			Name:   name,
			Preset: preset,
			// Owner and peers: the socket file belongs to root (0:0, mode
			// 0660) and any process that can open it may connect. A real
			// runner would set OwnerUid/OwnerGid and AllowedPeers.
		}})
		if status.Code(err) == codes.AlreadyExists {
			fmt.Printf("socket %s was just created by someone else\n", name)
			break
		}
		if err != nil {
			return fmt.Errorf("create socket %s: %w", name, err)
		}
		fmt.Printf("created socket %s at %s\n  export DOCKER_HOST=unix://%s\n",
			name, resp.GetSocket().GetPath(), resp.GetSocket().GetPath())
	default:
		return fmt.Errorf("get socket %s: %w", name, err)
	}

	// 3. Dry run: would this socket forward a privileged container create?
	// CheckRequest judges the request without contacting dockerd.
	check, err := api.CheckRequest(ctx, &sockguardv1.CheckRequestRequest{
		Socket: name,
		Method: "POST",
		Target: "/v1.41/containers/create",
		Body:   []byte(privilegedCreate),
	})
	if err != nil {
		return fmt.Errorf("check request: %w", err)
	}
	verdict := "deny"
	if check.GetAllowed() {
		verdict = "allow"
	}
	fmt.Printf("check POST /v1.41/containers/create (privileged): %s\n  canonical: %s %s\n  rule:      %s\n",
		verdict, check.GetMethod(), check.GetPath(), check.GetRule())
	if !check.GetAllowed() {
		fmt.Printf("  reason:    %s (%s)\n", check.GetReason(), check.GetReasonCode())
	}

	// 4. The last 10 denials on any socket, newest first.
	denials, err := api.ListDenials(ctx, &sockguardv1.ListDenialsRequest{PageSize: 10})
	if err != nil {
		return fmt.Errorf("list denials: %w", err)
	}
	fmt.Printf("last %d denial(s):\n", len(denials.GetDenials()))
	for _, d := range denials.GetDenials() {
		fmt.Printf("  %s  %-16s uid=%d  %s %s  %s: %s\n",
			d.GetTime().AsTime().Local().Format(time.DateTime), d.GetSocket(), d.GetPeerUid(),
			d.GetMethod(), d.GetPath(), d.GetReasonCode(), d.GetReason())
	}
	return nil
}

func stateName(s sockguardv1.SocketState) string {
	switch s {
	case sockguardv1.SocketState_SOCKET_STATE_SERVING:
		return "serving"
	case sockguardv1.SocketState_SOCKET_STATE_FAILED:
		return "failed"
	}
	return "unknown"
}
