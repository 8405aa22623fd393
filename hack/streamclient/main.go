// streamclient speaks the Kubernetes streaming protocols (remote command and port
// forward, over SPDY/3.1 and WebSocket) to a URL that Exec, Attach or PortForward returned.
// It is built on the SPDY and WebSocket libraries the Kubernetes clients use, so that the
// server is tested against an implementation it was not written with.
//
// Every subcommand takes -cacert FILE: trust that PEM certificate for https:// URLs.
//
//	streamclient exec -url URL [-proto spdy|ws] [-version V] [-stdin] [-stdout] [-stderr] [-tty] [-resize WxH]
//	streamclient exec -urls [-proto spdy|ws] [-stdout] [-stderr]  (benchmarks: URLs on stdin, times out)
//	streamclient portforward -url URL [-proto spdy|ws] -port N
//	streamclient sink -port N [-bytes B]  (benchmarks: accept one connection on loopback, discard it)
//	streamclient send -port N     (benchmarks: send stdin to loopback directly, the reply to stdout)
//
// exec copies this process's stdin/stdout/stderr and exits with the remote exit code
// (255 when the status is not an exit code). portforward sends stdin through one forwarded
// connection and prints what comes back.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/spdystream"
	"github.com/gorilla/websocket"
)

type status struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
	Details *struct {
		Causes []struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"causes"`
	} `json:"details"`
}

func fail(code int, format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "streamclient: "+format+"\n", args...)
	os.Exit(code)
}

// exitCode turns the error stream's content into a process exit code.
func exitCode(version string, raw []byte) int {
	if len(raw) == 0 {
		return 0
	}
	if version == "v4.channel.k8s.io" || version == "v5.channel.k8s.io" {
		var s status
		if err := json.Unmarshal(raw, &s); err != nil {
			fail(255, "bad status %q: %v", raw, err)
		}
		if s.Status == "Success" {
			return 0
		}
		if s.Reason == "NonZeroExitCode" && s.Details != nil {
			for _, c := range s.Details.Causes {
				if c.Reason == "ExitCode" {
					n, err := strconv.Atoi(c.Message)
					if err == nil {
						return n
					}
				}
			}
		}
		fail(255, "remote error: %s", s.Message)
	}
	fail(255, "remote error: %s", raw)
	return 255
}

// tlsConfig is used for https:// URLs; -cacert fills it.
var tlsConfig = &tls.Config{}

func loadCA(path string) {
	pem, err := os.ReadFile(path)
	if err != nil {
		fail(2, "cacert: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fail(2, "cacert: no certificate in %s", path)
	}
	tlsConfig.RootCAs = pool
}

// bufferedConn reads what the HTTP response parser buffered before the socket itself.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func spdyDial(rawURL, version string) (*spdystream.Connection, string) {
	u, err := url.Parse(rawURL)
	if err != nil {
		fail(2, "bad url: %v", err)
	}
	var conn net.Conn
	if u.Scheme == "https" {
		conn, err = tls.Dial("tcp", u.Host, tlsConfig)
	} else {
		conn, err = net.Dial("tcp", u.Host)
	}
	if err != nil {
		fail(2, "dial: %v", err)
	}
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n", u.RequestURI(), u.Host)
	for _, v := range strings.Split(version, ",") {
		fmt.Fprintf(conn, "X-Stream-Protocol-Version: %s\r\n", v)
	}
	fmt.Fprintf(conn, "\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		fail(2, "upgrade response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		fail(3, "upgrade refused: %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	sc, err := spdystream.NewConnection(&bufferedConn{conn, br}, false)
	if err != nil {
		fail(2, "spdy: %v", err)
	}
	go sc.Serve(spdystream.NoOpStreamHandler)
	return sc, resp.Header.Get("X-Stream-Protocol-Version")
}

func spdyStream(sc *spdystream.Connection, kv ...string) *spdystream.Stream {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	s, err := sc.CreateStream(h, nil, false)
	if err != nil {
		fail(2, "create stream %v: %v", kv, err)
	}
	if err := s.WaitTimeout(30 * time.Second); err != nil {
		fail(2, "stream %v not accepted: %v", kv, err)
	}
	return s
}

type execOpts struct {
	url, version               string
	stdin, stdout, stderr, tty bool
	width, height              int
	in                         io.Reader
	out, errOut                io.Writer
}

func resizeJSON(o execOpts) []byte {
	b, _ := json.Marshal(map[string]int{"Width": o.width, "Height": o.height})
	return b
}

// copyAside copies src to dst on a goroutine that wg waits for.
func copyAside(wg *sync.WaitGroup, dst io.Writer, src io.Reader) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(dst, src)
	}()
}

func execSPDY(o execOpts) int {
	sc, chosen := spdyDial(o.url, o.version)
	errStream := spdyStream(sc, "streamType", "error")
	var errBuf bytes.Buffer
	var wg sync.WaitGroup
	copyAside(&wg, &errBuf, errStream)
	if o.stdin {
		in := spdyStream(sc, "streamType", "stdin")
		go func() {
			io.Copy(in, o.in)
			in.Close()
		}()
	}
	if o.stdout {
		copyAside(&wg, o.out, spdyStream(sc, "streamType", "stdout"))
	}
	if o.stderr {
		copyAside(&wg, o.errOut, spdyStream(sc, "streamType", "stderr"))
	}
	if o.tty && chosen != "v2.channel.k8s.io" && chosen != "channel.k8s.io" {
		r := spdyStream(sc, "streamType", "resize")
		if o.width > 0 {
			r.Write(resizeJSON(o))
		}
	}
	wg.Wait()
	sc.Close()
	return exitCode(chosen, errBuf.Bytes())
}

func wsDial(rawURL, version string) (*websocket.Conn, string) {
	u := strings.Replace(strings.Replace(rawURL, "https://", "wss://", 1), "http://", "ws://", 1)
	d := websocket.Dialer{
		Subprotocols:     strings.Split(version, ","),
		HandshakeTimeout: 30 * time.Second,
		TLSClientConfig:  tlsConfig,
	}
	ws, resp, err := d.Dial(u, nil)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(resp.Body)
			fail(3, "upgrade refused: %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		fail(2, "dial: %v", err)
	}
	return ws, ws.Subprotocol()
}

// wsSender writes binary messages on channel ch; safe to call from several goroutines.
func wsSender(ws *websocket.Conn) func(ch byte, data []byte) error {
	var writeMu sync.Mutex
	return func(ch byte, data []byte) error {
		writeMu.Lock()
		defer writeMu.Unlock()
		return ws.WriteMessage(websocket.BinaryMessage, append([]byte{ch}, data...))
	}
}

// sendAll passes what r yields to send in chunks; false when send failed before r ended.
func sendAll(r io.Reader, send func([]byte) error) bool {
	buf := make([]byte, 32*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 && send(buf[:n]) != nil {
			return false
		}
		if err != nil {
			return true
		}
	}
}

// receive hands each non-empty binary message to got, split into channel and payload,
// until the connection ends.
func receive(ws *websocket.Conn, got func(ch byte, payload []byte)) {
	for {
		kind, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		if kind == websocket.BinaryMessage && len(data) > 0 {
			got(data[0], data[1:])
		}
	}
}

func execWS(o execOpts) int {
	ws, chosen := wsDial(o.url, o.version)
	send := wsSender(ws)
	if o.tty && o.width > 0 {
		send(4, resizeJSON(o))
	}
	if o.stdin {
		go func() {
			toStdin := func(b []byte) error { return send(0, b) }
			if sendAll(o.in, toStdin) && chosen == "v5.channel.k8s.io" {
				send(255, []byte{0})
			}
		}()
	}
	var errBuf []byte
	receive(ws, func(ch byte, payload []byte) {
		switch ch {
		case 1:
			o.out.Write(payload)
		case 2:
			o.errOut.Write(payload)
		case 3:
			errBuf = append(errBuf, payload...)
		}
	})
	ws.Close()
	return exitCode(chosen, errBuf)
}

// portForwardDone exits with the error channel's content when there is any.
func portForwardDone(errBuf []byte) int {
	if len(errBuf) > 0 {
		fail(1, "port forward error: %s", errBuf)
	}
	return 0
}

func portForwardSPDY(rawURL string, port int) int {
	sc, _ := spdyDial(rawURL, "portforward.k8s.io")
	p := strconv.Itoa(port)
	errStream := spdyStream(sc, "streamType", "error", "port", p, "requestID", "0")
	data := spdyStream(sc, "streamType", "data", "port", p, "requestID", "0")
	var errBuf bytes.Buffer
	var wg sync.WaitGroup
	copyAside(&wg, &errBuf, errStream)
	copyAside(&wg, os.Stdout, data)
	io.Copy(data, os.Stdin)
	data.Close()
	wg.Wait()
	sc.Close()
	return portForwardDone(errBuf.Bytes())
}

func portForwardWS(rawURL string, port int) int {
	sep := "?"
	if strings.Contains(rawURL, "?") {
		sep = "&"
	}
	ws, _ := wsDial(fmt.Sprintf("%s%sport=%d", rawURL, sep, port), "v4.channel.k8s.io")
	send := wsSender(ws)
	go sendAll(os.Stdin, func(b []byte) error { return send(0, b) })
	var errBuf []byte
	seen := map[byte]bool{}
	receive(ws, func(ch byte, payload []byte) {
		if !seen[ch] {
			// Each channel opens with the port, little endian.
			if len(payload) < 2 || int(binary.LittleEndian.Uint16(payload)) != port {
				fail(2, "channel %d did not open with port %d: %v", ch, port, payload)
			}
			seen[ch] = true
			payload = payload[2:]
		}
		switch ch {
		case 0:
			os.Stdout.Write(payload)
		case 1:
			errBuf = append(errBuf, payload...)
		}
	})
	ws.Close()
	return portForwardDone(errBuf)
}

// sink accepts one connection on 127.0.0.1:port, reads it to the end and closes it.
func sink(port int, limit int64) int {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		fail(2, "listen: %v", err)
	}
	fmt.Println("listening")
	c, err := l.Accept()
	if err != nil {
		fail(2, "accept: %v", err)
	}
	var r io.Reader = c
	if limit > 0 {
		// Protocols without a half-close (WebSocket v4) end when the target closes.
		r = io.LimitReader(c, limit)
	}
	n, _ := io.Copy(io.Discard, r)
	c.Close()
	fmt.Fprintf(os.Stderr, "%d bytes\n", n)
	return 0
}

// send copies stdin to 127.0.0.1:port, half-closes, and copies the reply to stdout until
// the peer closes.
func send(port int) int {
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		fail(2, "dial: %v", err)
	}
	io.Copy(c, os.Stdin)
	c.(*net.TCPConn).CloseWrite()
	io.Copy(os.Stdout, c)
	return 0
}

// execEach runs one session per URL read from stdin (the last word of each line), output
// discarded, and prints each session's wall time in microseconds: connection, upgrade,
// streams, the command's run and the status. A non-zero exit ends the run.
func execEach(o execOpts, proto string) int {
	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		words := strings.Fields(lines.Text())
		if len(words) == 0 {
			continue
		}
		o.url = words[len(words)-1]
		o.in = strings.NewReader("")
		o.out, o.errOut = io.Discard, io.Discard
		start := time.Now()
		var code int
		if proto == "ws" {
			code = execWS(o)
		} else {
			code = execSPDY(o)
		}
		elapsed := time.Since(start)
		if code != 0 {
			fail(code, "session on %s exited with %d", o.url, code)
		}
		fmt.Println(elapsed.Microseconds())
	}
	return 0
}

func main() {
	if len(os.Args) < 2 {
		fail(2, "usage: streamclient exec|portforward -url URL ...")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	rawURL := fs.String("url", "", "streaming URL")
	proto := fs.String("proto", "spdy", "spdy or ws")
	version := fs.String("version", "", "subprotocol(s) to offer, comma separated")
	stdin := fs.Bool("stdin", false, "send stdin")
	stdout := fs.Bool("stdout", false, "receive stdout")
	stderr := fs.Bool("stderr", false, "receive stderr")
	tty := fs.Bool("tty", false, "terminal session")
	resize := fs.String("resize", "", "terminal size WxH")
	port := fs.Int("port", 0, "port to forward")
	limit := fs.Int64("bytes", 0, "sink: close after this many bytes")
	each := fs.Bool("urls", false, "exec: read URLs from stdin, one session each, print the times")
	cacert := fs.String("cacert", "", "PEM certificate to trust for https:// URLs")
	fs.Parse(os.Args[2:])
	if *cacert != "" {
		loadCA(*cacert)
	}
	switch os.Args[1] {
	case "sink":
		os.Exit(sink(*port, *limit))
	case "send":
		os.Exit(send(*port))
	}
	if *rawURL == "" && !*each {
		fail(2, "-url is required")
	}
	switch os.Args[1] {
	case "exec", "attach":
		o := execOpts{url: *rawURL, version: *version, stdin: *stdin, stdout: *stdout, stderr: *stderr, tty: *tty,
			in: os.Stdin, out: os.Stdout, errOut: os.Stderr}
		if *resize != "" {
			fmt.Sscanf(*resize, "%dx%d", &o.width, &o.height)
		}
		if o.version == "" {
			if *proto == "ws" {
				o.version = "v5.channel.k8s.io,v4.channel.k8s.io"
			} else {
				o.version = "v4.channel.k8s.io,v3.channel.k8s.io,v2.channel.k8s.io,channel.k8s.io"
			}
		}
		if *each {
			os.Exit(execEach(o, *proto))
		}
		if *proto == "ws" {
			os.Exit(execWS(o))
		}
		os.Exit(execSPDY(o))
	case "portforward":
		if *proto == "ws" {
			os.Exit(portForwardWS(*rawURL, *port))
		}
		os.Exit(portForwardSPDY(*rawURL, *port))
	default:
		fail(2, "unknown command %q", os.Args[1])
	}
}
