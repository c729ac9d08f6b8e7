// Package kubeapi runs a real Kubernetes API server for tests: etcd 3.6 and
// kube-apiserver v1.36.3, both built once from the Go module proxy into the
// peer cache (scripts/etcd3.6.sh, scripts/kube-apiserver.sh; the cache is
// ${TUNNELPLANE_CACHE:-/var/cache/tunnelplane}, outside the clone).
//
// The server is what flannel's Kubernetes subnet manager talks to: a
// token (file) authenticates the one user, every request is allowed
// (--authorization-mode=AlwaysAllow), and the serving certificate is the
// self-signed one kube-apiserver makes in its --cert-dir. Start returns once
// /readyz answers ok, with a kubeconfig file for clients (client-go,
// flanneld's --kubeconfig-file, tunneld's flannel.kubeconfig).
//
// It listens on loopback by default. To reach it from other network
// namespaces, run it in one (Options.Command, e.g. a topo.NS's Command)
// on an address the others route to (Options.Host, Options.Dial).
//
// Everything started is stopped at the test's cleanup, within bounded
// times (SIGTERM, then SIGKILL after 10 s), even when the test fails; the
// logs of both processes are printed then.
//
// This package has no Kubernetes dependency of its own: tests bring
// client-go where they need it.
package kubeapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"tunnelplane/bench/topo"
)

// Timeouts. Building the peers the first time is slow (about 6 minutes for
// kube-apiserver); a cached start takes a few seconds.
const (
	BuildTimeout = 15 * time.Minute
	ReadyTimeout = 60 * time.Second
	StopTimeout  = 10 * time.Second
)

// Options says where and how to run the server. The zero value runs both
// processes on the host's loopback on free ports.
type Options struct {
	// Command makes the command for a process; nil is exec.CommandContext.
	// A topo.NS's Command runs the servers inside that namespace.
	Command func(ctx context.Context, name string, args ...string) *exec.Cmd
	// Dial reaches the servers (readiness checks); nil dials from this
	// process's namespace.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Host is the address both servers listen on; zero is 127.0.0.1.
	Host netip.Addr
	// EtcdPort, EtcdPeerPort and Port fix the ports (etcd client, etcd
	// peer, API server); zero picks free ones on the host (only valid when
	// the servers run in this namespace).
	EtcdPort, EtcdPeerPort, Port int
}

// Server is a running etcd + kube-apiserver.
type Server struct {
	// URL is the API server's base URL, e.g. https://127.0.0.1:40123.
	URL string
	// Token is the bearer token of the user (in group system:masters).
	Token string
	// CAData is the PEM the server's certificate chains to.
	CAData []byte
	// Kubeconfig is the path of a kubeconfig file for URL, CAData, Token.
	Kubeconfig string

	tb      testing.TB
	opts    Options
	dir     string
	apiArgs []string
	bin     string
	client  *http.Client

	mu  sync.Mutex
	api *proc
}

// proc is one started process and its log.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  *topo.LogBuffer
}

// Start builds (once, into the cache) or finds etcd 3.6 and kube-apiserver,
// starts both, and waits until the API server is ready.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if opts.Command == nil {
		opts.Command = exec.CommandContext
	}
	if !opts.Host.IsValid() {
		opts.Host = netip.MustParseAddr("127.0.0.1")
	}
	for _, p := range []*int{&opts.EtcdPort, &opts.EtcdPeerPort, &opts.Port} {
		if *p == 0 {
			*p = freePort(tb, opts.Host)
		}
	}
	etcdBin := Peer(tb, "etcd3.6.sh")
	apiBin := Peer(tb, "kube-apiserver.sh")

	s := &Server{tb: tb, opts: opts, dir: tb.TempDir(), bin: apiBin}
	s.Token = randomHex(tb, 16)
	s.URL = "https://" + net.JoinHostPort(opts.Host.String(), strconv.Itoa(opts.Port))

	etcdURL := "http://" + net.JoinHostPort(opts.Host.String(), strconv.Itoa(opts.EtcdPort))
	peerURL := "http://" + net.JoinHostPort(opts.Host.String(), strconv.Itoa(opts.EtcdPeerPort))
	etcd := s.start("etcd", etcdBin,
		"--name", "kubeapi", "--data-dir", filepath.Join(s.dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "kubeapi="+peerURL, "--log-level", "warn")
	s.waitTCP(etcd, net.JoinHostPort(opts.Host.String(), strconv.Itoa(opts.EtcdPort)))

	tokens := filepath.Join(s.dir, "tokens.csv")
	writeFile(tb, tokens, []byte(s.Token+`,admin,admin,"system:masters"`+"\n"))
	saKey := filepath.Join(s.dir, "sa.key")
	writeFile(tb, saKey, rsaKeyPEM(tb))
	certDir := filepath.Join(s.dir, "certs")
	s.apiArgs = []string{
		"--etcd-servers", etcdURL,
		"--bind-address", opts.Host.String(), "--advertise-address", opts.Host.String(),
		"--secure-port", strconv.Itoa(opts.Port),
		"--cert-dir", certDir,
		"--token-auth-file", tokens,
		"--authorization-mode", "AlwaysAllow",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", saKey,
		"--service-account-signing-key-file", saKey,
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--v", "0",
	}
	s.StartAPIServer()

	// The serving certificate file holds the certificate and the CA that
	// signed it (kube-apiserver writes both to apiserver.crt).
	ca, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
	if err != nil {
		tb.Fatalf("kubeapi: the self-signed certificate: %v", err)
	}
	s.CAData = ca
	s.Kubeconfig = filepath.Join(s.dir, "kubeconfig")
	writeFile(tb, s.Kubeconfig, []byte(s.kubeconfig()))
	return s
}

// StartAPIServer starts kube-apiserver (again, after StopAPIServer) on the
// same etcd, port and certificates, and waits until it is ready.
func (s *Server) StartAPIServer() {
	s.tb.Helper()
	s.mu.Lock()
	running := s.api != nil
	s.mu.Unlock()
	if running {
		s.tb.Fatalf("kubeapi: kube-apiserver is running already")
	}
	p := s.start("kube-apiserver", s.bin, s.apiArgs...)
	s.mu.Lock()
	s.api = p
	s.mu.Unlock()
	s.waitReady(p)
}

// StopAPIServer stops kube-apiserver, leaving etcd (and so every object)
// in place, to test clients that lose the API server for a while. It is
// killed if it has not exited 2 s after SIGTERM: a graceful shutdown waits
// for open watches (an informer's) to end, which would make the outage
// start late by up to StopTimeout.
func (s *Server) StopAPIServer() {
	s.mu.Lock()
	p := s.api
	s.api = nil
	s.mu.Unlock()
	if p != nil {
		p.stop(2 * time.Second)
	}
}

// start runs one process and registers its stop with the test's cleanup.
func (s *Server) start(name, bin string, args ...string) *proc {
	s.tb.Helper()
	p := &proc{name: name, done: make(chan struct{}), log: &topo.LogBuffer{}}
	p.cmd = s.opts.Command(context.Background(), bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		s.tb.Fatalf("kubeapi: start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	tb := s.tb
	tb.Cleanup(func() {
		p.stop(StopTimeout)
		if tb.Failed() {
			tb.Logf("%s log (tail):\n%s", name, tail(p.log.String(), 4000))
		}
	})
	return p
}

// stop sends SIGTERM and waits up to grace, then kills; it may run twice.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (s *Server) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if s.opts.Dial != nil {
		return s.opts.Dial(ctx, network, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// waitTCP waits until addr accepts a connection or p exits.
func (s *Server) waitTCP(p *proc, addr string) {
	s.tb.Helper()
	deadline := time.Now().Add(ReadyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := s.dial(ctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-p.done:
			s.tb.Fatalf("kubeapi: %s exited (%v) before it listened on %s:\n%s", p.name, p.err, addr, tail(p.log.String(), 4000))
		default:
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("kubeapi: %s did not listen on %s within %s: %v", p.name, addr, ReadyTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitReady polls /readyz with the token until it answers 200 "ok". The
// certificate is not checked here: it may not exist yet on the first poll.
func (s *Server) waitReady(p *proc) {
	s.tb.Helper()
	if s.client == nil {
		s.client = &http.Client{
			Timeout: 2 * time.Second,
			Transport: &http.Transport{
				DialContext:     s.dial,
				TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
			},
		}
	}
	deadline := time.Now().Add(ReadyTimeout)
	var last string
	for {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+s.Token)
		resp, err := s.client.Do(req)
		if err == nil {
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(b.String()) == "ok" {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, tail(b.String(), 500))
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			s.tb.Fatalf("kubeapi: kube-apiserver exited (%v) before it was ready:\n%s", p.err, tail(p.log.String(), 6000))
		default:
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("kubeapi: kube-apiserver not ready within %s: %s\n%s", ReadyTimeout, last, tail(p.log.String(), 6000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *Server) kubeconfig() string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubeapi
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: kubeapi
  context:
    cluster: kubeapi
    user: admin
current-context: kubeapi
`, s.URL, base64.StdEncoding.EncodeToString(s.CAData), s.Token)
}

// Peer runs scripts/<script> of this repository, which prints the path of
// a peer binary it finds in the cache or builds there first.
func Peer(tb testing.TB, script string) string {
	tb.Helper()
	root, err := repoRoot()
	if err != nil {
		tb.Fatalf("kubeapi: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), BuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", script))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("kubeapi: scripts/%s: %v\n%s", script, err, tail(stderr.String(), 4000))
	}
	if stderr.Len() > 0 { // it built: say how long it took
		tb.Logf("scripts/%s built it in %s", script, time.Since(t0).Round(time.Second))
	}
	return strings.TrimSpace(string(out))
}

// repoRoot finds the directory of tunnelplane's go.mod above the working
// directory (a test runs in its package's directory).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(b, []byte("module tunnelplane\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the tunnelplane repository")
		}
		dir = parent
	}
}

func freePort(tb testing.TB, host netip.Addr) int {
	tb.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host.String(), "0"))
	if err != nil {
		tb.Fatalf("kubeapi: a free port on %s: %v (set Options ports when the servers run in another namespace)", host, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func randomHex(tb testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// rsaKeyPEM is the service-account signing key kube-apiserver requires.
func rsaKeyPEM(tb testing.TB) []byte {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

func writeFile(tb testing.TB, path string, data []byte) {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
