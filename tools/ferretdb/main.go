// Command ferretdb runs FerretDB 1.24 with its SQLite backend on a loopback port, in plaintext,
// TLS (-tls-listen with a certificate and key), or both.
//
// The upstream `go install` binary panics at start (it needs a generated version file), so the
// project builds this small wrapper around the documented embeddable package instead. It is the
// MongoDB-compatible store of the local stack and of the integration tests.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on (empty: none)")
	tlsListen := flag.String("tls-listen", "", "TCP address of the TLS listener (empty: none)")
	tlsCert := flag.String("tls-cert-file", "", "PEM certificate of the TLS listener")
	tlsKey := flag.String("tls-key-file", "", "PEM private key of the TLS listener")
	dataDir := flag.String("data-dir", "", "directory for the SQLite files (created if missing)")
	flag.Parse()

	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "ferretdb: -data-dir is required")
		os.Exit(2)
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: cannot create data dir %s: %v\n", *dataDir, err)
		os.Exit(1)
	}

	db, err := ferretdb.New(&ferretdb.Config{
		Handler:   "sqlite",
		SQLiteURL: "file:" + *dataDir + "/",
		Listener: ferretdb.ListenerConfig{
			TCP:         *listen,
			TLS:         *tlsListen,
			TLSCertFile: *tlsCert,
			TLSKeyFile:  *tlsKey,
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	fmt.Fprintf(os.Stderr, "ferretdb: listening on %q, TLS on %q, data in %s\n", *listen, *tlsListen, *dataDir)
	if err := db.Run(ctx); err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}
}
