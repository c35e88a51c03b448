// Command webex-simulator serves a simulation of the Webex
// organization-contacts API on loopback, so that an administrator can
// rehearse a contactsync job (sink.webex with base_url pointing here)
// before pointing it at a real organization.
//
//	webex-simulator -listen 127.0.0.1:8765 -org 0ae87ade-6c7a-4b6f-9d49-1b0e8a8f1c2d \
//	    -token-file sim.token -state sim-contacts.json -rate-429 0.05 -latency 200ms
//
// then, in the job: base_url: http://127.0.0.1:8765/v1, token_file: sim.token.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/contactsync/contactsync/sinks/webexapi/simulator"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "webex-simulator:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("webex-simulator", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8765", "address to listen on (loopback only)")
	org := fs.String("org", "0ae87ade-6c7a-4b6f-9d49-1b0e8a8f1c2d", "organization UUID")
	tokenFile := fs.String("token-file", "", "file holding the accepted admin token; created with a random token if missing")
	clientID := fs.String("client-id", "", "OAuth client id (enables POST /v1/access_token)")
	clientSecretFile := fs.String("client-secret-file", "", "file holding the OAuth client secret")
	refreshFile := fs.String("refresh-token-file", "", "file holding the first valid refresh token")
	ttl := fs.Duration("token-ttl", time.Hour, "lifetime of issued access tokens")
	latency := fs.Duration("latency", 0, "latency added to every request")
	rate429 := fs.Float64("rate-429", 0, "fraction of requests answered 429")
	rate5xx := fs.Float64("rate-5xx", 0, "fraction of requests answered 503")
	retryAfter := fs.Int("retry-after", 1, "Retry-After seconds of injected 429s")
	seed := fs.Int64("seed", 1, "seed of the injected failures")
	maxBulk := fs.Int("max-bulk", 1000, "most items per bulk call")
	noLink := fs.Bool("no-link", false, "page search answers without Link headers")
	state := fs.String("state", "", "JSON file the contacts are loaded from and saved to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := loopback(*listen); err != nil {
		return err
	}
	opts := simulator.Options{
		OrgID: *org, TokenTTL: *ttl, Latency: *latency, Rate429: *rate429, Rate5xx: *rate5xx,
		RetryAfter: *retryAfter, Seed: *seed, MaxBulk: *maxBulk, NoLinkHeader: *noLink,
	}
	var err error
	if *tokenFile != "" {
		if opts.Token, err = tokenFrom(*tokenFile); err != nil {
			return err
		}
	}
	if *clientID != "" {
		opts.ClientID = *clientID
		if opts.ClientSecret, err = readFile(*clientSecretFile, "-client-secret-file"); err != nil {
			return err
		}
		if opts.RefreshToken, err = readFile(*refreshFile, "-refresh-token-file"); err != nil {
			return err
		}
	}
	if opts.Token == "" && opts.ClientID == "" {
		return errors.New("give -token-file, or -client-id with its secret and refresh token files")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	sim := simulator.New(opts)
	var dirty atomic.Bool
	if *state != "" {
		if err := sim.LoadFile(*state); err != nil {
			return err
		}
		sim.AfterWrite = func(*http.Request) { dirty.Store(true) }
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	srv := &http.Server{Handler: logged(sim, log), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if *state != "" {
		go func() {
			t := time.NewTicker(2 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if dirty.Swap(false) {
						if err := sim.SaveFile(*state); err != nil {
							log.Error("save", "error", err)
						}
					}
				}
			}
		}()
	}
	log.Info("serving the Webex contacts API simulation", "base_url", "http://"+ln.Addr().String()+"/v1",
		"org_id", *org, "contacts", sim.Len())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	if *state != "" {
		if err := sim.SaveFile(*state); err != nil {
			return err
		}
	}
	log.Info("stopped", "contacts", sim.Len(), "calls", sim.Calls())
	return nil
}

// loopback refuses any address an outside host could reach: this is a
// rehearsal tool that accepts a well-known token.
func loopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %q: only a loopback address (127.0.0.1, ::1) is allowed", addr)
	}
	return nil
}

// tokenFrom reads the accepted token, or writes a random one (mode 0600)
// for contactsync's token_file to point at.
func tokenFrom(path string) (string, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		b := make([]byte, 24)
		_, _ = rand.Read(b)
		if err := os.WriteFile(path, []byte("sim-"+hex.EncodeToString(b)+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("-token-file: %w", err)
		}
	}
	return readFile(path, "-token-file")
}

func readFile(path, flagName string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("%s is required", flagName)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", flagName, path)
	}
	return s, nil
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(s int) { w.status = s; w.ResponseWriter.WriteHeader(s) }

// logged logs each request's method, path and status; never its headers,
// which carry the token.
func logged(h http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: 200}
		start := time.Now()
		h.ServeHTTP(sw, r)
		log.Info("request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "took", time.Since(start).Round(time.Millisecond))
	})
}
