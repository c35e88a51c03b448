// Command contactsync keeps Webex organization contacts in sync with an
// LDAP directory or CRM CSV drops. main only wires signals and the exit
// status; everything else is in package cli and below.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/contactsync/contactsync/cli"
)

func main() { os.Exit(run()) }

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	reload := make(chan os.Signal, 1)
	signal.Notify(reload, syscall.SIGHUP)
	defer signal.Stop(reload)
	hup := make(chan struct{}, 1)
	go func() {
		for range reload {
			select {
			case hup <- struct{}{}:
			default:
			}
		}
	}()
	return cli.Main(ctx, cli.IO{Args: os.Args[1:], Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Reload: hup})
}
