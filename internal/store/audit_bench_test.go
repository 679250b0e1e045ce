package store

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkAppendAudit appends to a full log, so every append also prunes
// the oldest entry.
func BenchmarkAppendAudit(b *testing.B) {
	s, err := Open(b.TempDir()+"/customstream.db", time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.SetAuditRetention(AuditRetention{MaxAge: DefaultAuditMaxAge, MaxEntries: 1000})
	e := AuditEntry{Actor: "token:ci pipeline", Action: "image.upload", Outcome: AuditOK, Remote: "192.0.2.7",
		Target: "custom:ubuntu:noble:amd64:generic 20261126", Detail: "image 01JDX3Q5W8, 4 files, 812.4 MiB"}
	for i := range 1000 {
		e.Time = time.Time{}
		e.Detail = fmt.Sprint("warm-up ", i)
		if err := s.AppendAudit(&e); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		e.Time = time.Time{}
		if err := s.AppendAudit(&e); err != nil {
			b.Fatal(err)
		}
	}
}
