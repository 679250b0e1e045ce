package store

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// settingsKey is the one record of the settings bucket.
const settingsKey = "settings"

// Settings are what an admin changes in the portal while the server runs.
type Settings struct {
	// JobRetentionDays is how long finished jobs stay in the history.
	JobRetentionDays int       `json:"job_retention_days"`
	UpdatedAt        time.Time `json:"updated_at"`
}

// Bounds of the settings, checked by Validate.
const (
	DefaultJobRetentionDays = 30
	MaxJobRetentionDays     = 3650
)

// DefaultSettings are the settings of a new server.
func DefaultSettings() Settings {
	return Settings{JobRetentionDays: DefaultJobRetentionDays}
}

// JobRetention is JobRetentionDays as a duration.
func (s Settings) JobRetention() time.Duration {
	return time.Duration(s.JobRetentionDays) * 24 * time.Hour
}

// Validate says in words what is wrong with a setting.
func (s Settings) Validate() error {
	if s.JobRetentionDays < 1 || s.JobRetentionDays > MaxJobRetentionDays {
		return fmt.Errorf("keep finished jobs for 1 to %d days", MaxJobRetentionDays)
	}
	return nil
}

// GetSettings returns the saved settings, or the defaults when none were saved.
func (s *Store) GetSettings() (Settings, error) {
	out := DefaultSettings()
	err := s.db.View(func(tx *bolt.Tx) error { return get(tx, bucketSettings, settingsKey, &out) })
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Settings{}, fmt.Errorf("settings: %w", err)
	}
	return out, nil
}

// PutSettings saves valid settings.
func (s *Store) PutSettings(v Settings) error {
	if err := v.Validate(); err != nil {
		return err
	}
	v.UpdatedAt = time.Now().UTC()
	return s.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketSettings, settingsKey, &v) })
}

// scheduleKey holds when this data directory's schedules began.
const scheduleKey = "schedule_since"

// ScheduleSince returns when the server first ran on this data directory,
// saving now on the first call: a periodic job with no run yet counts from
// it, so restarts do not postpone its first run.
func (s *Store) ScheduleSince() (time.Time, error) {
	var since time.Time
	// A read first: the dashboard asks on every refresh, and a write
	// transaction would sync the file each time.
	err := s.db.View(func(tx *bolt.Tx) error { return get(tx, bucketSettings, scheduleKey, &since) })
	if errors.Is(err, ErrNotFound) {
		err = s.db.Update(func(tx *bolt.Tx) error {
			err := get(tx, bucketSettings, scheduleKey, &since)
			if errors.Is(err, ErrNotFound) {
				since = time.Now().UTC()
				return put(tx, bucketSettings, scheduleKey, since)
			}
			return err
		})
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("schedule start: %w", err)
	}
	return since, nil
}
