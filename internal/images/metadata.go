package images

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/customstream/customstream/internal/store"
)

// Upload file fields.
const (
	FileKernel   = "kernel"
	FileInitrd   = "initrd"
	FileRootfs   = "rootfs"
	FileManifest = "manifest"
)

// FileFields are the multipart file fields an upload may carry, in order.
var FileFields = []string{FileKernel, FileInitrd, FileRootfs, FileManifest}

// Metadata is what an uploader says about an image.
type Metadata struct {
	OS              string
	Release         string
	Arch            string
	Version         string
	Subarch         string
	Subarches       string
	Kflavor         string
	Label           string
	ReleaseTitle    string
	ReleaseCodename string
	SupportEOL      string
	VersionName     string
	RootfsType      string
	// Expected holds client-given sha256 sums by file field.
	Expected map[string]string
}

// textFields maps each form field to its place in Metadata.
func (m *Metadata) textFields() map[string]*string {
	return map[string]*string{
		"os": &m.OS, "release": &m.Release, "arch": &m.Arch, "version": &m.Version,
		"subarch": &m.Subarch, "subarches": &m.Subarches, "kflavor": &m.Kflavor, "label": &m.Label,
		"release_title": &m.ReleaseTitle, "release_codename": &m.ReleaseCodename,
		"support_eol": &m.SupportEOL, "version_name": &m.VersionName, "rootfs_type": &m.RootfsType,
	}
}

// Set assigns a form field; an unknown name is an error naming it, so a
// typo such as "realease" is not silently ignored.
func (m *Metadata) Set(name, value string) *FieldError {
	value = strings.TrimSpace(value)
	if p, ok := m.textFields()[name]; ok {
		*p = value
		return nil
	}
	if file, ok := strings.CutSuffix(name, "_sha256"); ok && isFileField(file) {
		if m.Expected == nil {
			m.Expected = map[string]string{}
		}
		m.Expected[file] = strings.ToLower(value)
		return nil
	}
	return &FieldError{Field: name, Message: "unknown field"}
}

func isFileField(name string) bool {
	for _, f := range FileFields {
		if f == name {
			return true
		}
	}
	return false
}

// IsFileField reports whether name is one of the upload's file fields.
func IsFileField(name string) bool { return isFileField(name) }

// FieldError is a problem with one upload field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// ValidationError lists every problem of an upload.
type ValidationError []FieldError

func (v ValidationError) Error() string {
	parts := make([]string, len(v))
	for i, e := range v {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

// ByField returns the messages keyed by field, for forms.
func (v ValidationError) ByField() map[string]string {
	m := make(map[string]string, len(v))
	for _, e := range v {
		if _, ok := m[e.Field]; !ok {
			m[e.Field] = e.Message
		}
	}
	return m
}

// Patterns of the text fields, shared with the upload form's pattern
// attributes (HTML anchors them itself).
const (
	namePattern        = `[a-z0-9][a-z0-9._\-]{0,63}`
	versionPattern     = `[0-9A-Za-z][0-9A-Za-z._\-]{0,31}`
	versionNamePattern = `[0-9A-Za-z][0-9A-Za-z._\-]{0,63}`
	datePattern        = `\d{4}-\d{2}-\d{2}`
)

// InputPatterns are the patterns by field kind, for forms.
var InputPatterns = map[string]string{
	"name": namePattern, "names": namePattern + `(,` + namePattern + `)*`,
	"version": versionPattern, "versionName": versionNamePattern, "date": datePattern,
}

var (
	// nameRE allows what MAAS uses in os, release, subarch, kflavor and
	// label: lowercase, no path separators, no ':' (ids are ':'-joined).
	nameRE        = regexp.MustCompile(`^` + namePattern + `$`)
	versionRE     = regexp.MustCompile(`^` + versionPattern + `$`)
	versionNameRE = regexp.MustCompile(`^` + versionNamePattern + `$`)
	dateRE        = regexp.MustCompile(`^` + datePattern + `$`)
	sha256RE      = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Arches are the architectures MAAS deploys.
var Arches = []string{"amd64", "arm64", "armhf", "i386", "ppc64el", "riscv64", "s390x"}

// SingleFileOSes are the operating systems MAAS installs from a single root
// image. Not ubuntu: MAAS 3.7 ignores an ubuntu product whose id lacks
// ":v3:", which only boot images have; a custom Ubuntu goes in as "custom".
var SingleFileOSes = []string{"centos", "custom", "esxi", "ol", "rhel", "suse", "windows"}

// SingleRootTypes are the item types of a single-file root image.
var SingleRootTypes = []string{"root-tgz", "root-tbz", "root-txz", "root-dd", "root-dd.xz", "root-dd.gz",
	"root-dd.bz2", "root-dd.tar", "root-dd.raw", "root-dd.tar.xz", "root-dd.tar.bz2"}

// RootfsSquashfs is the root file system of a kernel-booted image.
const RootfsSquashfs = "squashfs"

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Normalize fills the defaults of the optional fields.
func (m *Metadata) Normalize() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&m.Subarch, "generic")
	def(&m.Subarches, m.Subarch)
	def(&m.Kflavor, "generic")
	def(&m.Label, "stable")
	def(&m.RootfsType, RootfsSquashfs)
	// MAAS 3.8 requires release_codename on boot images.
	def(&m.ReleaseCodename, m.Release)
	if m.ReleaseTitle == "" && m.Version != "" {
		m.ReleaseTitle = m.Version
		if m.OS != "ubuntu" && m.OS != "" {
			m.ReleaseTitle = m.OS + " " + m.Version
		}
	}
}

// Kind is the image kind the root file system type implies.
func (m *Metadata) Kind() string {
	if m.RootfsType == RootfsSquashfs {
		return store.KindBoot
	}
	return store.KindSingle
}

// Preview validates the text fields received so far (on a normalized copy),
// before any file is stored; the file combination is checked later.
func (m *Metadata) Preview() ValidationError {
	c := *m
	c.Normalize()
	return c.validateFields(nil)
}

// Validate checks normalized metadata and which files came; every problem is
// reported with the field it concerns.
func (m *Metadata) Validate(files map[string]bool) ValidationError {
	return append(m.validateFields(files), m.validateFiles(files)...)
}

// validateFields checks the text fields; with files nil (a preview), missing
// fields and client checksums are not checked yet.
func (m *Metadata) validateFields(files map[string]bool) ValidationError {
	var errs ValidationError
	bad := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	required := []struct{ field, value string }{{"os", m.OS}, {"release", m.Release}, {"arch", m.Arch}, {"version", m.Version}}
	for _, r := range required {
		// A preview runs before the later fields have arrived.
		if r.value == "" && files != nil {
			bad(r.field, "is required")
		}
	}
	for _, n := range []struct{ field, value string }{
		{"os", m.OS}, {"release", m.Release}, {"subarch", m.Subarch}, {"kflavor", m.Kflavor}, {"label", m.Label},
	} {
		if n.value != "" && !nameRE.MatchString(n.value) {
			bad(n.field, "%q is not allowed: use lowercase letters, digits, '.', '-' or '_' (at most 64, starting with a letter or digit)", n.value)
		}
	}
	if m.Arch != "" && !contains(Arches, m.Arch) {
		bad("arch", "%q is not an architecture MAAS deploys (%s)", m.Arch, strings.Join(Arches, ", "))
	}
	if m.Version != "" && !versionRE.MatchString(m.Version) {
		bad("version", "%q is not allowed: use letters, digits, '.', '-' or '_', such as 24.04", m.Version)
	}
	for _, s := range strings.Split(m.Subarches, ",") {
		if !nameRE.MatchString(s) {
			bad("subarches", "%q is not a comma-separated list of subarches", m.Subarches)
			break
		}
	}
	for _, t := range []struct{ field, value string }{{"release_title", m.ReleaseTitle}, {"release_codename", m.ReleaseCodename}} {
		if msg := checkText(t.value); msg != "" {
			bad(t.field, "%s", msg)
		}
	}
	if m.SupportEOL != "" {
		if _, err := time.Parse("2006-01-02", m.SupportEOL); err != nil || !dateRE.MatchString(m.SupportEOL) {
			bad("support_eol", "%q is not a date in the form YYYY-MM-DD", m.SupportEOL)
		}
	}
	if m.VersionName != "" && !versionNameRE.MatchString(m.VersionName) {
		bad("version_name", "%q is not allowed: use letters, digits, '.', '-' or '_', such as 20250101.01", m.VersionName)
	}
	for file, sum := range m.Expected {
		if !sha256RE.MatchString(sum) {
			bad(file+"_sha256", "is not a sha256 (64 hexadecimal digits)")
		} else if files != nil && !files[file] {
			bad(file+"_sha256", "is given but no %s file was sent", file)
		}
	}
	return errs
}

// validateFiles checks the combination of files against the rootfs type.
func (m *Metadata) validateFiles(files map[string]bool) ValidationError {
	var errs ValidationError
	bad := func(field, msg string) { errs = append(errs, FieldError{Field: field, Message: msg}) }
	if !files[FileRootfs] {
		bad(FileRootfs, "a root file system file is required")
	}
	switch {
	case m.RootfsType == RootfsSquashfs:
		for _, f := range []string{FileKernel, FileInitrd} {
			if !files[f] {
				bad(f, "is required for a squashfs boot image (kernel + initrd + rootfs); for a single-file image set rootfs_type, e.g. root-tgz")
			}
		}
	case contains(SingleRootTypes, m.RootfsType):
		for _, f := range []string{FileKernel, FileInitrd} {
			if files[f] {
				bad(f, fmt.Sprintf("is not used by a single-file %s image: send rootfs alone, or use rootfs_type squashfs", m.RootfsType))
			}
		}
		if m.OS != "" && !contains(SingleFileOSes, m.OS) {
			bad("os", fmt.Sprintf("%q is not an OS MAAS installs from a single root image (%s)", m.OS, strings.Join(SingleFileOSes, ", ")))
		}
	default:
		bad("rootfs_type", fmt.Sprintf("%q is not supported: use squashfs or one of %s", m.RootfsType, strings.Join(SingleRootTypes, ", ")))
	}
	return errs
}

// checkText allows human text but no control characters, and keeps it short.
func checkText(s string) string {
	if len(s) > 100 {
		return "is longer than 100 characters"
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return "contains a control or invalid character"
		}
	}
	return ""
}

// ProductID is the product id: multi-file products carry ":v3:" as MAAS requires.
func (m *Metadata) ProductID() string {
	if m.Kind() == store.KindBoot {
		return fmt.Sprintf("com.customstream.%s:v3:boot:%s:%s:%s:%s:%s", m.Label, m.OS, m.Release, m.Arch, m.Subarch, m.Kflavor)
	}
	return fmt.Sprintf("com.customstream.%s:%s:%s:%s:%s", m.Label, m.OS, m.Release, m.Arch, m.Subarch)
}

// Content ids of uploaded images: one product file per kind, since MAAS 3.8
// rejects a file that mixes them.
const (
	ContentBoot   = "com.customstream:uploads:v3:download"
	ContentSingle = "com.customstream:uploads:bases-download"
)

// ContentID is the product file the image is published in.
func (m *Metadata) ContentID() string {
	if m.Kind() == store.KindBoot {
		return ContentBoot
	}
	return ContentSingle
}

// itemDir is the directory of a version's files, relative to the mirror root;
// every part is a checked name, so it cannot leave uploads/. Each kind has
// its own subtree with a fixed depth, so no file path is another's directory.
func (m *Metadata) itemDir(versionName string) string {
	if m.Kind() == store.KindBoot {
		return strings.Join([]string{"uploads", "boot", m.OS, m.Release, m.Arch, m.Subarch, m.Kflavor, m.Label, versionName}, "/")
	}
	return strings.Join([]string{"uploads", "single", m.OS, m.Release, m.Arch, m.Subarch, m.Label, versionName}, "/")
}

// itemFor names the item an uploaded file becomes.
func (m *Metadata) itemFor(field, versionName string) store.Item {
	dir := m.itemDir(versionName)
	root := m.RootfsType
	switch field {
	case FileKernel:
		return store.Item{Name: "boot-kernel", FType: "boot-kernel", Path: dir + "/boot-kernel"}
	case FileInitrd:
		return store.Item{Name: "boot-initrd", FType: "boot-initrd", Path: dir + "/boot-initrd"}
	case FileRootfs:
		return store.Item{Name: root, FType: root, Path: dir + "/" + root}
	default:
		return store.Item{Name: "manifest", FType: "manifest", Path: dir + "/" + root + ".manifest"}
	}
}

// NextVersionName returns a fixed-width YYYYMMDD.NN name greater, as a
// string, than every existing one, so MAAS takes the new upload as latest.
func NextVersionName(now time.Time, existing []string) (string, error) {
	sort.Strings(existing)
	max := ""
	if len(existing) > 0 {
		max = existing[len(existing)-1]
	}
	day := now.UTC().Format("20060102")
	for n := 1; n <= 99; n++ {
		name := fmt.Sprintf("%s.%02d", day, n)
		if name > max {
			return name, nil
		}
	}
	return "", &FieldError{Field: "version_name", Message: fmt.Sprintf("cannot generate a name after %q today: give version_name", max)}
}
