package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/customstream/customstream/internal/blobs"
	"github.com/customstream/customstream/internal/config"
	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/publish"
	"github.com/customstream/customstream/internal/signing"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/termprogress"
	"github.com/customstream/customstream/internal/transfer"
	"github.com/customstream/customstream/internal/units"
)

const transferUsage = `Usage:
  customstream export FILE.tar        write the published stream (documents, keyring, files) to FILE.tar ("-": standard output)
  customstream import [--keyring FILE] FILE.tar
                                      verify an export and add its images (with the server stopped; "-": standard input)
`

// ioBufSize buffers archive reads and writes to standard input and output.
const ioBufSize = 1 << 20

// progressFor returns a progress callback printing to stderr, and the
// function that ends its line.
func progressFor(stderr io.Writer, label string) (func(done, total int64), func()) {
	p := termprogress.New(stderr, label)
	return func(done, total int64) {
		p.Update(done, total)
		if done == total && total > 0 {
			p.Finish()
		}
	}, p.Finish
}

// runExport writes the published stream of CUSTOMSTREAM_DATA_DIR to a tar
// archive; the server may run meanwhile.
func runExport(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprint(stderr, transferUsage)
		return 2
	}
	cfg, ok := loadConfig(stderr)
	if !ok {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	progress, finish := progressFor(stderr, "export")
	opts := transfer.ExportOptions{Progress: progress}
	var res *transfer.Result
	var err error
	report := stdout
	if args[0] == "-" {
		// The archive is standard output: the summary goes to stderr.
		report = stderr
		bw := bufio.NewWriterSize(stdout, ioBufSize)
		if res, err = transfer.Export(ctx, bw, cfg.DataDir, opts); err == nil {
			err = bw.Flush()
		}
	} else {
		res, err = transfer.ExportFile(ctx, args[0], cfg.DataDir, opts)
	}
	finish()
	if err != nil {
		fmt.Fprintln(stderr, "customstream:", err)
		return 1
	}
	fmt.Fprintf(report, "Exported %s: %s, %s (%s), signed by %s\n",
		count(res.Versions, "version"), count(res.Documents, "document"), count(res.Files, "file"), units.Bytes(res.Bytes), res.Fingerprint)
	return 0
}

// runImport adds the images of an archive to CUSTOMSTREAM_DATA_DIR, with
// the server stopped, and publishes them.
func runImport(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyringFile := fs.String("keyring", "", "OpenPGP keyring (binary or armored) the archive must be signed with")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprint(stderr, transferUsage)
		return 2
	}
	cfg, ok := loadConfig(stderr)
	if !ok {
		return 2
	}
	var opts transfer.ImportOptions
	if *keyringFile != "" {
		data, err := os.ReadFile(*keyringFile)
		if err == nil {
			opts.Keyring, err = simplestreams.ReadKeyring(data)
		}
		if err != nil {
			fmt.Fprintf(stderr, "customstream: keyring %s: %v\n", *keyringFile, err)
			return 2
		}
	}
	in := stdin
	if name := fs.Arg(0); name != "-" {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(stderr, "customstream:", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	progress, finish := progressFor(stderr, "import")
	opts.Progress, opts.Out = progress, stdout
	res, err := importArchive(ctx, cfg, bufio.NewReaderSize(in, ioBufSize), opts)
	finish()
	if err != nil {
		fmt.Fprintln(stderr, "customstream:", err)
		return 1
	}
	fmt.Fprintf(stdout, "Imported %s (%d already here): %s (%s) verified, %s stored\n",
		count(res.Added, "new version"), res.Present, count(res.Files, "file"), units.Bytes(res.Bytes), units.Bytes(res.Staged))
	fmt.Fprintln(stdout, "The stream is published, signed with this server's key. Start the server.")
	return 0
}

// count is n and word, plural unless n is 1.
func count(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// importArchive wires the data directory's parts as the web process does,
// holding its database so that no server starts meanwhile.
func importArchive(ctx context.Context, cfg *config.Config, r io.Reader, opts transfer.ImportOptions) (*transfer.ImportResult, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	st, err := openStopped(cfg.DataDir, "import")
	if err != nil {
		return nil, err
	}
	defer st.Close()
	log := slog.New(slog.DiscardHandler)
	b, err := blobs.Open(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	pub, err := publish.New(cfg.DataDir, b, log)
	if err != nil {
		return nil, err
	}
	signer, err := signing.Open(cfg.DataDir, log)
	if err != nil {
		return nil, err
	}
	pub.SignWith(signer.Sign, signer.Keyring())
	svc := images.NewService(st, b, pub, log)
	svc.KeepVersions = cfg.KeepVersions
	return transfer.Import(ctx, r, svc, b, opts)
}
