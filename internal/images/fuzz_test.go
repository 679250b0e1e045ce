package images

import (
	"path"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// requireCleanRel fails unless p is a clean relative slash path with no ".."
// segment, NUL byte or backslash.
func requireCleanRel(t *testing.T, p string) {
	t.Helper()
	require.NotEmpty(t, p)
	require.Equal(t, path.Clean(p), p, "path %q is not clean", p)
	require.False(t, path.IsAbs(p), "path %q is absolute", p)
	require.NotContains(t, p, "\x00", "path %q has a NUL byte", p)
	require.NotContains(t, p, `\`, "path %q has a backslash", p)
	for _, seg := range strings.Split(p, "/") {
		require.NotEqual(t, "..", seg, "path %q has a \"..\" segment", p)
	}
}

// FuzzMetadata checks that upload metadata which validates can only name
// items under uploads/ and a product id without path separators.
func FuzzMetadata(f *testing.F) {
	type seed struct {
		os, release, arch, version, subarch, kflavor, label, versionName, rootfsType, releaseTitle string
		files                                                                                      uint8
	}
	for _, s := range []seed{
		{"ubuntu", "noble", "amd64", "24.04", "", "", "", "", "", "", 0b0111},
		{"ubuntu", "noble", "amd64", "24.04", "hwe-24.04", "generic", "stable", "20250101.01", "squashfs", "Ubuntu 24.04 LTS", 0b1111},
		{"centos", "centos9", "amd64", "9", "", "", "", "", "root-tgz", "", 0b0100},
		{"custom", "mine", "arm64", "1.0", "", "", "candidate", "v1", "root-dd.xz", "My image", 0b1100},
		{"rhel", "9", "s390x", "9.4", "", "", "", "", "root-dd.tar.xz", "", 0b0101},
		{"..", "..", "amd64", "..", "..", "..", "..", "..", "..", "..", 0b0111},
		{"a/b", "../x", "amd64", "1/2", "x/..", "k", "l", "../../etc", "root-tgz", "t", 0b0100},
		{"a..b", "r..", "amd64", "1..2", "s..", "k..", "l..b", "v..1", "squashfs", "", 0b0111},
		{"Ubuntu", "noble\x00", "amd64\\", "24.04", "", "", "", "", "", "\x7f", 0b0111},
		{"ubuntu", "noble", "amd64", "24.04", "", "", "", "20250101.01", "root-tgz", "", 0b0100},
	} {
		f.Add(s.os, s.release, s.arch, s.version, s.subarch, s.kflavor, s.label, s.versionName, s.rootfsType, s.releaseTitle, s.files)
	}
	f.Fuzz(func(t *testing.T, osName, release, arch, version, subarch, kflavor, label, versionName, rootfsType, releaseTitle string, bits uint8) {
		m := Metadata{
			OS: osName, Release: release, Arch: arch, Version: version, Subarch: subarch, Kflavor: kflavor,
			Label: label, VersionName: versionName, RootfsType: rootfsType, ReleaseTitle: releaseTitle,
		}
		files := map[string]bool{}
		for i, field := range FileFields {
			if bits&(1<<i) != 0 {
				files[field] = true
			}
		}
		m.Normalize()
		if errs := m.Validate(files); len(errs) > 0 {
			for _, e := range errs {
				require.NotEmpty(t, e.Field)
				require.NotEmpty(t, e.Message)
			}
			return
		}
		id := m.ProductID()
		require.NotContains(t, id, "/", "product id %q", id)
		// Names such as "a..b" are valid, so ".." can occur inside a part of
		// the id; what must not occur is a part that is "." or "..".
		require.NotContains(t, id, `\`, "product id %q", id)
		require.NotContains(t, id, "\x00", "product id %q", id)
		for _, part := range strings.Split(id, ":") {
			require.NotEqual(t, "..", part, "product id %q", id)
			require.NotEqual(t, ".", part, "product id %q", id)
		}
		name := m.VersionName
		if name == "" {
			name = "20250101.01"
		}
		dir := m.itemDir(name)
		requireCleanRel(t, dir)
		require.True(t, strings.HasPrefix(dir, "uploads/"), "item dir %q is not under uploads/", dir)
		for _, field := range FileFields {
			if !files[field] {
				continue
			}
			p := m.itemFor(field, name).Path
			requireCleanRel(t, p)
			require.True(t, strings.HasPrefix(p, dir+"/"), "item path %q is not in %q", p, dir)
		}
	})
}

// FuzzMirrorPath checks that an accepted upstream item lands under mirror/
// as a clean relative path.
func FuzzMirrorPath(f *testing.F) {
	for _, s := range [][2]string{
		{"http://images.maas.io/ephemeral-v3/stable/", "noble/amd64/20250101/squashfs"},
		{"https://images.maas.io:8443/ephemeral-v3/stable", "bootloaders/uefi/amd64/20210819.0/grubx64.efi"},
		{"http://host/", "a/b"},
		{"http://host/a/../b", "c"},
		{"http://host/%2e%2e/x", "c"},
		{"http://host/", "../etc/passwd"},
		{"http://host/", "a/./b"},
		{"http://host/", "/abs"},
		{"http://host/", "a//b"},
		{"http://host/", `a\..\b`},
		{"http://host/", "a\x00b"},
		{"file:///etc/", "passwd"},
		{"http://[::1]:80/x", "y"},
		{"http://user:pw@host/x", "y"},
		{"", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, root, itemPath string) {
		p, err := MirrorPath(root, itemPath)
		if err != nil {
			require.Empty(t, p)
			return
		}
		require.True(t, strings.HasPrefix(p, MirrorPrefix+"/"), "%q is not under mirror/", p)
		requireCleanRel(t, p)
		require.True(t, strings.HasSuffix(p, "/"+itemPath), "%q does not end in the item path %q", p, itemPath)
	})
}
