package transfer

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/customstream/customstream/internal/blobs"
	"github.com/customstream/customstream/internal/images"
	"github.com/customstream/customstream/internal/simplestreams"
	"github.com/customstream/customstream/internal/units"
)

// StagingDir is the staging sub-directory imports receive files in.
const StagingDir = "import"

// ImportOptions configure Import.
type ImportOptions struct {
	// Keyring, when set, is the only one the documents may be signed with;
	// otherwise the archive's own keyring.gpg verifies them (the archive is
	// then checked for damage, and the fingerprint tells whose it is).
	Keyring  openpgp.EntityList
	Progress Progress  // bytes of files read out of those the documents list
	Out      io.Writer // what was verified, before the files are read; nil discards
}

// ImportResult says what an import did.
type ImportResult struct {
	Result
	Added   int   // versions added
	Present int   // versions already here, skipped
	Staged  int64 // bytes of files that were not yet in the blob store
}

// importer reads one archive.
type importer struct {
	ctx     context.Context
	svc     *images.Service
	blobs   *blobs.Store
	o       ImportOptions
	out     io.Writer
	staging string // this import's own directory in staging

	docs        map[string][]byte
	docBytes    int64
	c           *contents // set once the keyring has come and the documents verified
	plan        *images.ImportPlan
	seen        map[string]bool   // entry names
	received    map[string]bool   // sha256 sums received
	staged      map[string]string // sha256 → staged path, to commit
	stagedBytes int64
	meter       *meter
	buf         []byte
}

// Import reads a transfer archive from r as a stream and adds its images
// to the data directory of svc and b, whose database the caller holds (the
// server is stopped). Documents come first and must verify; each file is
// then hashed as it streams into staging and checked against the size and
// sha256 of the signed documents; the blobs are committed and the versions
// recorded (ready, with origin "import:FINGERPRINT") and published only once
// the whole archive has verified. On any error nothing is recorded or
// published and the staged files are removed. Versions already here are
// skipped, so an archive can be imported twice.
func Import(ctx context.Context, r io.Reader, svc *images.Service, b *blobs.Store, o ImportOptions) (*ImportResult, error) {
	root, err := b.StagingDir(StagingDir)
	if err != nil {
		return nil, err
	}
	// The caller holds the database: no other import runs, and whatever is
	// here was left by one that was interrupted.
	if _, err := b.CleanStaging(StagingDir, func(string) bool { return false }); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(root, "run-")
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer os.RemoveAll(dir)
	im := &importer{ctx: ctx, svc: svc, blobs: b, o: o, out: o.Out, staging: dir, docs: map[string][]byte{},
		seen: map[string]bool{}, received: map[string]bool{}, staged: map[string]string{}, buf: make([]byte, copyBufSize)}
	if im.out == nil {
		im.out = io.Discard
	}
	if err := im.read(tar.NewReader(r)); err != nil {
		return nil, fmt.Errorf("import: %w; nothing was imported", err)
	}
	for sum, p := range im.staged {
		if err := b.Commit(p, sum); err != nil {
			return nil, fmt.Errorf("import: %w; nothing was imported", err)
		}
	}
	plan, err := svc.Import(im.c.versions, images.ImportOrigin(im.c.fingerprint))
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return &ImportResult{
		Result: Result{Fingerprint: im.c.fingerprint, Documents: len(im.c.docs), Versions: len(im.c.versions),
			Files: len(im.c.files), Bytes: im.c.bytes},
		Added: len(plan.New), Present: len(plan.Present), Staged: im.stagedBytes,
	}, nil
}

// read reads every entry up to the end of the archive.
func (im *importer) read(tr *tar.Reader) error {
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read the archive: %w (truncated, or not a tar archive?)", err)
		}
		name, err := entryName(hdr)
		if err != nil {
			return err
		}
		if im.seen[name] {
			return fmt.Errorf("%s is in the archive twice", name)
		}
		im.seen[name] = true
		if im.c == nil {
			err = im.document(tr, hdr, name)
		} else {
			err = im.file(tr, hdr, name)
		}
		if err != nil {
			return err
		}
	}
	if im.c == nil {
		return fmt.Errorf("the archive ends before %s: truncated, or not a customstream export", KeyringPath)
	}
	var missing []string
	for _, f := range im.c.files {
		if !im.received[f.sha] {
			missing = append(missing, f.first())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the archive is incomplete (truncated?): %d of %d files missing, the first %s", len(missing), len(im.c.files), missing[0])
	}
	return nil
}

// entryName refuses anything but a regular file at a clean relative path.
func entryName(hdr *tar.Header) (string, error) {
	name := hdr.Name
	switch {
	case hdr.Typeflag != tar.TypeReg:
		return "", fmt.Errorf("%s: entry type %q: only regular files may be in the archive (no links, devices or directories)", name, hdr.Typeflag)
	case name == "" || strings.ContainsAny(name, "\\\x00"):
		return "", fmt.Errorf("entry %q: not a valid path", name)
	case strings.HasPrefix(name, "/"):
		return "", fmt.Errorf("%s: an absolute path", name)
	case path.Clean(name) != name || name == "." || name == ".." || strings.HasPrefix(name, "../"):
		return "", fmt.Errorf("%s: not a clean path inside the tree", name)
	case hdr.Size < 0:
		return "", fmt.Errorf("%s: negative size", name)
	}
	return name, nil
}

// document holds a stream document, or, for the keyring, verifies them all.
func (im *importer) document(tr *tar.Reader, hdr *tar.Header, name string) error {
	if name == KeyringPath {
		data, err := readAll(tr, hdr, maxKeyringSize)
		if err != nil {
			return err
		}
		return im.verify(data)
	}
	if err := checkDocPath(name); err != nil {
		return fmt.Errorf("%s comes before %s: %w (an export holds documents, then the keyring, then the files)", name, KeyringPath, err)
	}
	im.docBytes += hdr.Size
	if im.docBytes > maxDocumentsSize {
		return fmt.Errorf("the documents exceed %s", units.Bytes(maxDocumentsSize))
	}
	data, err := readAll(tr, hdr, maxDocumentSize)
	if err != nil {
		return err
	}
	im.docs[name] = data
	return nil
}

func readAll(r io.Reader, hdr *tar.Header, limit int64) ([]byte, error) {
	if hdr.Size > limit {
		return nil, fmt.Errorf("%s is %s, more than %s", hdr.Name, units.Bytes(hdr.Size), units.Bytes(limit))
	}
	data := make([]byte, hdr.Size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("%s: %w (truncated?)", hdr.Name, err)
	}
	return data, nil
}

// verify checks the documents with the keyring (the archive's or the one
// given), checks the import against the records, and says what it found.
func (im *importer) verify(keyringData []byte) error {
	keyring := im.o.Keyring
	which := "the keyring you gave"
	if len(keyring) == 0 {
		var err error
		if keyring, err = simplestreams.ReadKeyring(keyringData); err != nil {
			return fmt.Errorf("%s: %w", KeyringPath, err)
		}
		which = "the archive's own " + KeyringPath + ": compare the fingerprint with `customstream keys show` on the source, or pass --keyring"
	}
	c, err := verifyDocuments(im.docs, keyring)
	if err != nil {
		return err
	}
	plan, err := im.svc.PlanImport(c.versions)
	if err != nil {
		return err
	}
	var need int64
	for _, f := range c.files {
		if _, ok := im.blobs.Has(f.sha); !ok {
			need += f.size
		}
	}
	if err := checkSpace(im.staging, need); err != nil {
		return err
	}
	im.c, im.plan, im.docs = c, plan, nil
	im.meter = &meter{total: c.bytes, report: im.o.Progress}
	fmt.Fprintf(im.out, "Signed by %s (verified with %s)\n", c.fingerprint, which)
	fmt.Fprintf(im.out, "%d versions (%d new, %d already here), %d files, %s (%s not yet here)\n",
		len(c.versions), len(plan.New), len(plan.Present), len(c.files), units.Bytes(c.bytes), units.Bytes(need))
	im.meter.add(0)
	return nil
}

// checkSpace refuses an import the data directory has no room for.
func checkSpace(dir string, need int64) error {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return fmt.Errorf("free space of %s: %w", dir, err)
	}
	if free := int64(fs.Bavail) * fs.Bsize; need > free {
		return fmt.Errorf("the import needs %s, the data directory has %s free", units.Bytes(need), units.Bytes(free))
	}
	return nil
}

// file receives one item file: into staging while hashing, or, when the
// blob store has it already, hashed and dropped.
func (im *importer) file(tr *tar.Reader, hdr *tar.Header, name string) error {
	f, ok := im.c.byPath[name]
	switch {
	case !ok:
		return fmt.Errorf("unknown file %s: no item of the signed documents has this path", name)
	case im.received[f.sha]:
		return fmt.Errorf("%s: its content (sha256 %s) is in the archive twice", name, f.sha)
	case hdr.Size != f.size:
		return fmt.Errorf("%s is %d bytes in the archive, the signed documents say %d", name, hdr.Size, f.size)
	}
	im.received[f.sha] = true
	h := sha256.New()
	var dst io.Writer = h
	var staged *os.File
	if _, ok := im.blobs.Has(f.sha); !ok {
		var err error
		if staged, err = os.Create(filepath.Join(im.staging, f.sha)); err != nil {
			return err
		}
		defer staged.Close()
		dst = io.MultiWriter(staged, h)
	}
	n, err := io.CopyBuffer(dst, &meteredReader{ctx: im.ctx, r: tr, m: im.meter}, im.buf)
	if err != nil {
		return fmt.Errorf("%s: %w (truncated?)", name, err)
	}
	if n != f.size {
		return fmt.Errorf("%s: %d of %d bytes (truncated?)", name, n, f.size)
	}
	if err := checkSum(name, h, f.sha); err != nil {
		return err
	}
	if staged != nil {
		// Synced before it is committed: the blob store trusts a blob's name.
		if err := staged.Sync(); err != nil {
			return err
		}
		if err := staged.Close(); err != nil {
			return err
		}
		im.staged[f.sha] = staged.Name()
		im.stagedBytes += f.size
	}
	return nil
}

func checkSum(name string, h hash.Hash, want string) error {
	if sum := hex.EncodeToString(h.Sum(nil)); sum != want {
		return fmt.Errorf("%s has sha256 %s, the signed documents say %s: the file is damaged or was changed", name, sum, want)
	}
	return nil
}
