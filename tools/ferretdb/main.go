// Command ferretdb runs FerretDB 1.24 on a loopback port, on its PostgreSQL backend (the default:
// a database of a PostgreSQL cluster given by -postgresql-url) or on its SQLite backend (files in
// -data-dir), in plaintext, TLS (-tls-listen with a certificate and key), or both.
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
	backend := flag.String("backend", "postgresql", "storage backend: postgresql or sqlite")
	postgresqlURL := flag.String("postgresql-url", "", "PostgreSQL database of the postgresql backend (postgres://user@host:port/db)")
	dataDir := flag.String("data-dir", "", "directory for the SQLite files of the sqlite backend (created if missing)")
	flag.Parse()

	config := ferretdb.Config{Handler: *backend, Listener: ferretdb.ListenerConfig{
		TCP:         *listen,
		TLS:         *tlsListen,
		TLSCertFile: *tlsCert,
		TLSKeyFile:  *tlsKey,
	}}
	var where string
	switch *backend {
	case "postgresql":
		if *postgresqlURL == "" {
			fail(2, "-postgresql-url is required with -backend=postgresql")
		}
		config.PostgreSQLURL = *postgresqlURL
		where = "a PostgreSQL database"
	case "sqlite":
		if *dataDir == "" {
			fail(2, "-data-dir is required with -backend=sqlite")
		}
		if err := os.MkdirAll(*dataDir, 0o700); err != nil {
			fail(1, fmt.Sprintf("cannot create data dir %s: %v", *dataDir, err))
		}
		// The embeddable package wants a `file:` URL ending in `/`.
		config.SQLiteURL = "file:" + *dataDir + "/"
		where = "SQLite files in " + *dataDir
	default:
		fail(2, fmt.Sprintf("unknown -backend %q (postgresql or sqlite)", *backend))
	}

	db, err := ferretdb.New(&config)
	if err != nil {
		fail(1, err.Error())
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// The URL is not printed: a caller's may carry a password.
	fmt.Fprintf(os.Stderr, "ferretdb: listening on %q, TLS on %q, %s backend, data in %s\n", *listen, *tlsListen, *backend, where)
	if err := db.Run(ctx); err != nil && ctx.Err() == nil {
		fail(1, err.Error())
	}
}

func fail(code int, message string) {
	fmt.Fprintln(os.Stderr, "ferretdb: "+message)
	os.Exit(code)
}
