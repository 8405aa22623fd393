// Command grpcprobe calls RuntimeService.Version and ImageService.ListImages on a CRI
// socket the way different generations of grpc-go clients dial it, so that each
// HTTP/2 :authority they send can be checked against the server:
//
//	-mode path       the target is the socket path with a custom dialer and the
//	                 passthrough resolver, as cri-tools up to 1.29 and older kubelets
//	                 dialed; :authority is the socket path
//	-mode localhost  the target is unix:///path; grpc-go sends "localhost"
//	-mode empty      the target is passthrough:/// with a custom dialer; :authority is ""
//
// It prints the runtime's name and version and exits 0, or prints the gRPC error and
// exits 1.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	socket := flag.String("socket", "/run/criox/criox.sock", "path of the CRI unix socket")
	mode := flag.String("mode", "path", "how to dial: path, localhost or empty")
	timeout := flag.Duration("timeout", 10*time.Second, "deadline of each call")
	flag.Parse()

	conn, err := dial(*mode, *socket)
	if err != nil {
		fmt.Fprintf(os.Stderr, "grpcprobe: %v\n", err)
		os.Exit(2)
	}
	defer conn.Close()

	if err := probe(conn, *timeout); err != nil {
		fmt.Fprintf(os.Stderr, "grpcprobe (%s): %v\n", *mode, err)
		os.Exit(1)
	}
}

func dial(mode, socket string) (*grpc.ClientConn, error) {
	unixDialer := func(ctx context.Context, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}
	creds := grpc.WithTransportCredentials(insecure.NewCredentials())
	switch mode {
	case "path":
		// grpc.Dial keeps the passthrough resolver as the default, as cri-tools 1.29
		// relied on; passthrough makes the whole target the :authority.
		return grpc.NewClient("passthrough:///"+socket, creds, grpc.WithContextDialer(unixDialer))
	case "localhost":
		return grpc.NewClient("unix://"+socket, creds)
	case "empty":
		return grpc.NewClient("passthrough:///", creds, grpc.WithContextDialer(unixDialer))
	default:
		return nil, fmt.Errorf("unknown -mode %q (want path, localhost or empty)", mode)
	}
}

func probe(conn *grpc.ClientConn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	version, err := runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return fmt.Errorf("RuntimeService.Version: %w", err)
	}
	images, err := runtimeapi.NewImageServiceClient(conn).ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		return fmt.Errorf("ImageService.ListImages: %w", err)
	}
	fmt.Printf("RuntimeName: %s\nRuntimeVersion: %s\nRuntimeApiVersion: %s\nImages: %d\n",
		version.RuntimeName, version.RuntimeVersion, version.RuntimeApiVersion, len(images.Images))
	return nil
}
