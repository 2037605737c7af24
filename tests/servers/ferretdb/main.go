// A MongoDB wire-protocol test server for tests/servers/ferretdb.py: FerretDB v1 embedded
// as a library with its SQLite handler. (`go install .../cmd/ferretdb` from the module
// proxy panics at start: its build/version/version.txt is generated in FerretDB's own
// repository, and the proxy's copy lacks it; the embedded package skips that check.)
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	dir := flag.String("sqlite-dir", "", "absolute directory for the SQLite files (it must exist)")
	flag.Parse()
	if *dir == "" {
		log.Fatal("-sqlite-dir is required")
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	server, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + *dir + "/",
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := server.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}
