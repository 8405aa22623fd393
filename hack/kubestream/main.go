// kubestream drives a CRI streaming URL with client-go's executors and port forwarder,
// the code kubectl exec, attach and port-forward run:
//
//	kubestream exec|attach URL [--protocol spdy|websocket|fallback] [--stdin] [--tty]
//	                           [--rows N --cols N] [--resize-to ROWSxCOLS]... [--ca FILE]
//	                           [--websocket-protocols P1,P2...]
//	kubestream portforward URL LOCAL:REMOTE [--protocol spdy|websocket] [--ca FILE]
//
// exec and attach copy the remote process's output to stdout and stderr, feed stdin
// with --stdin, and exit with the remote exit code. With --tty, --rows and --cols give
// the first terminal size and every SIGWINCH sends the next --resize-to size.
// portforward listens on 127.0.0.1:LOCAL (0 picks a port), prints
// "ready 127.0.0.1:PORT" once it listens, and forwards until SIGINT or SIGTERM.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	restclient "k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/client-go/util/exec"
	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream"
)

// usageError exits with 2, like flag parsing errors; client failures exit with 1 as
// kubectl's do, and remote exit codes pass through.
func usageError(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kubestream: "+format+"\n", args...)
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "error: %v\n", err)
	os.Exit(1)
}

type sizes []remotecommand.TerminalSize

func (s *sizes) String() string { return fmt.Sprint(*s) }

func (s *sizes) Set(v string) error {
	rows, cols, ok := strings.Cut(v, "x")
	r, err1 := strconv.ParseUint(rows, 10, 16)
	c, err2 := strconv.ParseUint(cols, 10, 16)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("want ROWSxCOLS, got %q", v)
	}
	*s = append(*s, remotecommand.TerminalSize{Width: uint16(c), Height: uint16(r)})
	return nil
}

type options struct {
	protocol string
	ca       string
	stdin    bool
	tty      bool
	rows     uint
	cols     uint
	resizes  sizes
	verbose  string
	// Subprotocols the WebSocket executor offers; client-go's default when empty.
	wsProtocols string
}

// parse reads flags that may come before, between or after the positional arguments.
func parse(fs *flag.FlagSet, args []string) []string {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			os.Exit(2)
		}
		if fs.NArg() == 0 {
			return positional
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// config is what the API server's proxy to the kubelet would use: the streaming
// server's scheme and host, trusting --ca for HTTPS.
func config(target *url.URL, o *options) *restclient.Config {
	c := &restclient.Config{Host: target.Scheme + "://" + target.Host}
	if o.ca != "" {
		c.TLSClientConfig.CAFile = o.ca
	}
	return c
}

// shouldFallback is kubectl's test for trying SPDY after WebSocket, saying so on stderr.
func shouldFallback(err error) bool {
	if httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err) {
		fmt.Fprintf(os.Stderr, "kubestream: the WebSocket upgrade failed (%v); falling back to SPDY\n", err)
		return true
	}
	return false
}

func websocketExecutor(c *restclient.Config, target *url.URL, o *options) (remotecommand.Executor, error) {
	// RFC 6455 opens a WebSocket with GET.
	if o.wsProtocols == "" {
		return remotecommand.NewWebSocketExecutor(c, http.MethodGet, target.String())
	}
	protocols := strings.Split(o.wsProtocols, ",")
	return remotecommand.NewWebSocketExecutorForProtocols(c, http.MethodGet, target.String(), protocols...)
}

func executor(target *url.URL, o *options) (remotecommand.Executor, error) {
	c := config(target, o)
	switch o.protocol {
	case "spdy":
		return remotecommand.NewSPDYExecutor(c, http.MethodPost, target)
	case "websocket":
		return websocketExecutor(c, target, o)
	case "fallback":
		ws, err := websocketExecutor(c, target, o)
		if err != nil {
			return nil, err
		}
		sp, err := remotecommand.NewSPDYExecutor(c, http.MethodPost, target)
		if err != nil {
			return nil, err
		}
		return remotecommand.NewFallbackExecutor(ws, sp, shouldFallback)
	}
	return nil, fmt.Errorf("unknown protocol %q: want spdy, websocket or fallback", o.protocol)
}

// sizeQueue hands client-go the first size, then one --resize-to size per SIGWINCH.
type sizeQueue struct {
	next chan *remotecommand.TerminalSize
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	return <-q.next
}

func newSizeQueue(o *options) *sizeQueue {
	q := &sizeQueue{next: make(chan *remotecommand.TerminalSize, 1)}
	if o.rows > 0 && o.cols > 0 {
		q.next <- &remotecommand.TerminalSize{Width: uint16(o.cols), Height: uint16(o.rows)}
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	go func() {
		for i := 0; ; i++ {
			<-winch
			if len(o.resizes) == 0 {
				continue
			}
			size := o.resizes[min(i, len(o.resizes)-1)]
			q.next <- &size
		}
	}()
	return q
}

func remoteCommand(args []string) {
	fs := flag.NewFlagSet(os.Args[1], flag.ContinueOnError)
	o := &options{}
	fs.StringVar(&o.protocol, "protocol", "spdy", "spdy, websocket or fallback (WebSocket, then SPDY)")
	fs.StringVar(&o.ca, "ca", "", "PEM file of the CA that signed the HTTPS streaming server")
	fs.BoolVar(&o.stdin, "stdin", false, "send this process's stdin")
	fs.BoolVar(&o.tty, "tty", false, "the session has a terminal")
	fs.UintVar(&o.rows, "rows", 0, "first terminal height")
	fs.UintVar(&o.cols, "cols", 0, "first terminal width")
	fs.Var(&o.resizes, "resize-to", "terminal size ROWSxCOLS sent on SIGWINCH (repeatable)")
	fs.StringVar(&o.wsProtocols, "websocket-protocols", "", "comma-separated subprotocols the WebSocket executor offers (default v5.channel.k8s.io)")
	fs.StringVar(&o.verbose, "v", "0", "client-go log verbosity")
	positional := parse(fs, args)
	if len(positional) != 1 {
		usageError("%s takes one URL, got %q", os.Args[1], positional)
	}
	setVerbosity(o.verbose)
	target, err := url.Parse(positional[0])
	if err != nil || target.Host == "" {
		usageError("bad URL %q", positional[0])
	}
	ex, err := executor(target, o)
	if err != nil {
		fail(err)
	}
	streams := remotecommand.StreamOptions{Stdout: os.Stdout, Tty: o.tty}
	if !o.tty {
		streams.Stderr = os.Stderr
	}
	if o.stdin {
		streams.Stdin = os.Stdin
	}
	if o.tty {
		streams.TerminalSizeQueue = newSizeQueue(o)
	}
	err = ex.Stream(streams)
	var exitErr exec.CodeExitError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(err, &exitErr):
		// What kubectl prints before passing the code on.
		fmt.Fprintln(os.Stderr, exitErr.Error())
		os.Exit(exitErr.Code)
	default:
		fail(err)
	}
}

func portForward(args []string) {
	fs := flag.NewFlagSet("portforward", flag.ContinueOnError)
	o := &options{}
	fs.StringVar(&o.protocol, "protocol", "spdy", "spdy or websocket (SPDY tunneled in WebSocket, then SPDY)")
	fs.StringVar(&o.ca, "ca", "", "PEM file of the CA that signed the HTTPS streaming server")
	fs.StringVar(&o.verbose, "v", "0", "client-go log verbosity")
	positional := parse(fs, args)
	if len(positional) != 2 {
		usageError("portforward takes URL LOCAL:REMOTE, got %q", positional)
	}
	setVerbosity(o.verbose)
	target, err := url.Parse(positional[0])
	if err != nil || target.Host == "" {
		usageError("bad URL %q", positional[0])
	}
	c := config(target, o)
	transport, upgrader, err := spdy.RoundTripperFor(c)
	if err != nil {
		fail(err)
	}
	dialer := spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: transport}, http.MethodPost, target)
	switch o.protocol {
	case "spdy":
	case "websocket":
		// As kubectl port-forward: SPDY inside a WebSocket, plain SPDY when refused.
		tunneling, err := portforward.NewSPDYOverWebsocketDialerForStreaming(target, c)
		if err != nil {
			fail(err)
		}
		dialer = portforward.NewFallbackDialerForStreaming(tunneling, dialer, shouldFallback)
	default:
		usageError("unknown protocol %q: want spdy or websocket", o.protocol)
	}
	stop := make(chan struct{})
	ready := make(chan struct{})
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-signals
		close(stop)
	}()
	forwarder, err := portforward.NewOnAddressesForStreaming(dialer, []string{"127.0.0.1"}, []string{positional[1]}, stop, ready, os.Stderr, os.Stderr)
	if err != nil {
		fail(err)
	}
	go func() {
		<-ready
		ports, err := forwarder.GetPorts()
		if err != nil || len(ports) == 0 {
			fail(fmt.Errorf("no forwarded port: %v", err))
		}
		fmt.Printf("ready 127.0.0.1:%d\n", ports[0].Local)
	}()
	if err := forwarder.ForwardPorts(); err != nil {
		fail(err)
	}
}

func setVerbosity(level string) {
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	_ = klogFlags.Set("v", level)
}

func main() {
	if len(os.Args) < 2 {
		usageError("usage: kubestream exec|attach|portforward URL ...")
	}
	switch os.Args[1] {
	case "exec", "attach":
		remoteCommand(os.Args[2:])
	case "portforward":
		portForward(os.Args[2:])
	default:
		usageError("unknown command %q: want exec, attach or portforward", os.Args[1])
	}
}
