// Command corpusgen builds the media corpus of package encoder/corpus (for
// `make corpus`) and prints where each file is.
//
//	corpusgen [-dir DIR] [-list] [-json] [-debian ROOT] [NAME...]
//
// With no NAME it builds every entry. -dir defaults to corpus.CacheDir()
// ($BANYAN_CORPUS_DIR, else the user cache directory). -debian also
// downloads the Debian packages that ship real files (corpus.Packages)
// with apt-get download, unpacks them under ROOT, and lists those files.
// -list prints the entries without building anything.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"time"

	"github.com/banyan-sched/banyan/encoder/corpus"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "corpusgen:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("dir", "", "directory for the built files (default: corpus.CacheDir())")
	list := flag.Bool("list", false, "print the entries and their traits; build nothing")
	asJSON := flag.Bool("json", false, "print the entries as JSON")
	debian := flag.String("debian", "", "also fetch and unpack the Debian packages with real files under this root (\"default\": corpus.DebianRoot())")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	var es []corpus.Entry
	if *list {
		es = corpus.Entries()
		if flag.NArg() > 0 {
			es = filter(es, flag.Args())
		}
	} else {
		if *dir == "" {
			d, err := corpus.CacheDir()
			if err != nil {
				return err
			}
			*dir = d
		}
		start := time.Now()
		var err error
		if es, err = corpus.Build(ctx, *dir, flag.Args()...); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "corpusgen: %d entries in %s (%v)\n", len(es), *dir, time.Since(start).Round(time.Millisecond))
	}
	if *debian == "default" {
		r, err := corpus.DebianRoot()
		if err != nil {
			return err
		}
		*debian = r
	}
	if *debian != "" {
		if err := corpus.FetchDebian(ctx, *debian); err != nil {
			return err
		}
		es = append(es, corpus.DebianEntries(*debian)...)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(es)
	}
	for _, e := range es {
		state := "valid"
		if !e.Valid {
			state = "bad: " + e.BadReason
		}
		file := e.File
		if file == "" {
			file = "(not built)"
		}
		fmt.Printf("%-28s %-10s %s\n", e.Name, state, file)
		for _, t := range e.Traits {
			fmt.Printf("    %s\n", t)
		}
	}
	return nil
}

func filter(es []corpus.Entry, names []string) []corpus.Entry {
	var out []corpus.Entry
	for _, e := range es {
		if slices.Contains(names, e.Name) {
			out = append(out, e)
		}
	}
	return out
}
