package enrich

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// storageContainer is one entry of containers/storage's containers.json.
type storageContainer struct {
	ID       string   `json:"id"`
	Names    []string `json:"names"`
	Metadata string   `json:"metadata"` // JSON written by podman: image-name, name
}

// storageIndex caches containers.json by id, parsed again only when the
// file changes (it holds every container of the host, and is rewritten on
// every create and remove).
type storageIndex struct {
	mu      sync.Mutex
	modTime time.Time
	size    int64
	byID    map[string]storageContainer
}

func (s *storageIndex) lookup(dir, name string) (map[string]storageContainer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := os.Lstat(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	if s.byID != nil && st.ModTime().Equal(s.modTime) && st.Size() == s.size {
		return s.byID, nil
	}
	b, err := readBeneath(dir, name, maxStorageSize)
	if err != nil {
		return nil, err
	}
	var list []storageContainer
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, err
	}
	byID := make(map[string]storageContainer, len(list))
	for _, c := range list {
		byID[c.ID] = c
	}
	s.byID, s.modTime, s.size = byID, st.ModTime(), st.Size()
	return byID, nil
}
