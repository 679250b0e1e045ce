package images

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func bootMeta() Metadata {
	return Metadata{OS: "ubuntu", Release: "noble", Arch: "amd64", Version: "24.04"}
}

var bootFiles = map[string]bool{FileKernel: true, FileInitrd: true, FileRootfs: true}

func TestNormalizeDefaults(t *testing.T) {
	m := bootMeta()
	m.Normalize()
	assert.Equal(t, "generic", m.Subarch)
	assert.Equal(t, "generic", m.Subarches)
	assert.Equal(t, "generic", m.Kflavor)
	assert.Equal(t, "stable", m.Label)
	assert.Equal(t, RootfsSquashfs, m.RootfsType)
	assert.Equal(t, "24.04", m.ReleaseTitle)
	assert.Equal(t, "noble", m.ReleaseCodename)
	assert.Equal(t, "com.customstream.stable:v3:boot:ubuntu:noble:amd64:generic:generic", m.ProductID())
	assert.Equal(t, ContentBoot, m.ContentID())

	c := Metadata{OS: "centos", Release: "centos70", Arch: "amd64", Version: "7.0", RootfsType: "root-tgz"}
	c.Normalize()
	assert.Equal(t, "centos 7.0", c.ReleaseTitle)
	assert.Equal(t, "com.customstream.stable:centos:centos70:amd64:generic", c.ProductID())
	assert.NotContains(t, c.ProductID(), ":v3:")
	assert.Equal(t, ContentSingle, c.ContentID())
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(m *Metadata)
		files  map[string]bool
		field  string
		msg    string
	}{
		{"valid boot image", func(*Metadata) {}, bootFiles, "", ""},
		{"valid single-file image", func(m *Metadata) { m.OS, m.Release, m.RootfsType = "centos", "centos70", "root-tgz" },
			map[string]bool{FileRootfs: true, FileManifest: true}, "", ""},
		{"missing os", func(m *Metadata) { m.OS = "" }, bootFiles, "os", "is required"},
		{"missing version", func(m *Metadata) { m.Version = "" }, bootFiles, "version", "is required"},
		{"path escape in release", func(m *Metadata) { m.Release = "../../etc" }, bootFiles, "release", "not allowed"},
		{"slash in os", func(m *Metadata) { m.OS = "ubuntu/x" }, bootFiles, "os", "not allowed"},
		{"colon in label", func(m *Metadata) { m.Label = "a:b" }, bootFiles, "label", "not allowed"},
		{"uppercase subarch", func(m *Metadata) { m.Subarch = "HWE" }, bootFiles, "subarch", "not allowed"},
		{"NUL in kflavor", func(m *Metadata) { m.Kflavor = "gen\x00" }, bootFiles, "kflavor", "not allowed"},
		{"unknown arch", func(m *Metadata) { m.Arch = "sparc" }, bootFiles, "arch", "not an architecture"},
		{"bad version", func(m *Metadata) { m.Version = "24 04" }, bootFiles, "version", "not allowed"},
		{"bad subarches", func(m *Metadata) { m.Subarches = "generic,,hwe" }, bootFiles, "subarches", "comma-separated"},
		{"control char in title", func(m *Metadata) { m.ReleaseTitle = "a\nb" }, bootFiles, "release_title", "control"},
		{"bad eol", func(m *Metadata) { m.SupportEOL = "2030-13-01" }, bootFiles, "support_eol", "YYYY-MM-DD"},
		{"bad version name", func(m *Metadata) { m.VersionName = "../1" }, bootFiles, "version_name", "not allowed"},
		{"bad client sha256", func(m *Metadata) { m.Expected = map[string]string{"rootfs": "abc"} }, bootFiles, "rootfs_sha256", "not a sha256"},
		{"sha256 for a missing file", func(m *Metadata) {
			m.Expected = map[string]string{"manifest": "0000000000000000000000000000000000000000000000000000000000000000"}
		}, bootFiles, "manifest_sha256", "no manifest file"},
		{"no rootfs", func(*Metadata) {}, map[string]bool{FileKernel: true, FileInitrd: true}, "rootfs", "required"},
		{"squashfs without kernel", func(*Metadata) {}, map[string]bool{FileInitrd: true, FileRootfs: true}, "kernel", "required for a squashfs"},
		{"single-file with kernel", func(m *Metadata) { m.OS, m.RootfsType = "centos", "root-tgz" }, bootFiles, "kernel", "not used by a single-file"},
		{"ubuntu single-file image", func(m *Metadata) { m.RootfsType = "root-tgz" }, map[string]bool{FileRootfs: true}, "os", "not an OS MAAS installs"},
		{"single-file of unknown os", func(m *Metadata) { m.OS, m.RootfsType = "plan9", "root-tgz" }, map[string]bool{FileRootfs: true}, "os", "not an OS MAAS installs"},
		{"unknown rootfs type", func(m *Metadata) { m.RootfsType = "iso" }, map[string]bool{FileRootfs: true}, "rootfs_type", "not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := bootMeta()
			tt.change(&m)
			m.Normalize()
			errs := m.Validate(tt.files)
			if tt.field == "" {
				assert.Empty(t, errs)
				return
			}
			require.NotEmpty(t, errs)
			assert.Contains(t, errs.ByField()[tt.field], tt.msg, errs.Error())
		})
	}
}

func TestSetRefusesUnknownField(t *testing.T) {
	var m Metadata
	assert.Nil(t, m.Set("release", " noble "))
	assert.Equal(t, "noble", m.Release)
	assert.Nil(t, m.Set("rootfs_sha256", "ABC"))
	assert.Equal(t, "abc", m.Expected["rootfs"])
	err := m.Set("realease", "noble")
	require.NotNil(t, err)
	assert.Equal(t, "realease", err.Field)
	assert.NotNil(t, m.Set("boot_sha256", "x"))
}

func TestPreviewIgnoresFieldsNotYetSent(t *testing.T) {
	m := Metadata{Arch: "amd64"}
	assert.Empty(t, m.Preview(), "os and release may come after the files")
	m.Release = "../x"
	assert.Contains(t, m.Preview().ByField(), "release")
}

func TestNextVersionName(t *testing.T) {
	now := time.Date(2026, 11, 25, 23, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		existing []string
		want     string
		err      bool
	}{
		{"first", nil, "20261125.01", false},
		{"second today", []string{"20261125.01"}, "20261125.02", false},
		{"after older days", []string{"20240101.07", "20261124.03"}, "20261125.01", false},
		{"after a user name", []string{"20261125.1"}, "20261125.10", false},
		{"tenth sorts after ninth", []string{"20261125.09"}, "20261125.10", false},
		{"future name blocks", []string{"20990101.01"}, "", true},
		{"day full", []string{"20261125.99"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NextVersionName(now, tt.existing)
			if tt.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			for _, e := range tt.existing {
				assert.Greater(t, got, e, "new names sort after every existing one")
			}
		})
	}
}
