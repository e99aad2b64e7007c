package e2e

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
)

// TestAdminReflectionAndHealth lists the admin socket's services the way
// grpcurl does (server reflection) and checks grpc.health.v1 answers. When
// grpcurl itself is installed, it is run too.
func TestAdminReflectionAndHealth(t *testing.T) {
	b := StartBroker(t)
	cc, err := grpc.NewClient("unix://"+b.AdminSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	hr, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check: %v %v", hr, err)
	}

	stream, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"sockguard.v1.SockguardService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}

	if path, err := exec.LookPath("grpcurl"); err == nil {
		// The unix:// target, not -unix PATH: grpcurl 1.9 with a current gRPC
		// resolves a bare -unix path as a TCP host.
		r := run(cmdOpts{}, path, "-plaintext", "unix://"+b.AdminSocket, "list")
		r.MustSucceed(t)
		if !strings.Contains(r.Stdout, "sockguard.v1.SockguardService") {
			t.Fatalf("grpcurl list: %s", r)
		}
	} else {
		t.Log("grpcurl not installed; listed the services through the reflection API directly")
	}
}
