// Package network owns pod networking through CNI (libcni): finding the pod
// network's config and plugins, and answering whether pod networking is ready.
package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
)

// NotReadyReason is the CRI condition reason while no CNI config is usable.
const NotReadyReason = "NetworkPluginNotReady"

// confExtensions are the file names libcni and the kubelet ecosystem accept.
var confExtensions = []string{".conflist", ".conf", ".json"}

// Status says whether pod networking can be set up, and if not, why.
type Status struct {
	Ready   bool   `json:"ready"`
	Reason  string `json:"reason,omitempty"`  // set when not ready
	Message string `json:"message,omitempty"` // set when not ready
	// Network names the config in use and File its path, when ready.
	Network string `json:"network,omitempty"`
	File    string `json:"file,omitempty"`
}

// Manager finds the pod network's CNI config in a directory, following
// changes to it: files appearing, being edited or removed take effect on the
// next call, without a restart.
type Manager struct {
	confDir  string
	binDirs  []string
	cacheDir string // libcni's record of what each ADD used

	mu          sync.Mutex
	fingerprint string                    // of confDir when current was loaded
	current     *libcni.NetworkConfigList // nil while nothing is usable
	file        string
	// podCIDRs are the node's pod CIDRs (UpdateRuntimeConfig), read from
	// cacheDir on first use.
	podCIDRs       []string
	podCIDRsLoaded bool
}

// NewManager returns a Manager reading configs from confDir and plugins
// from binDirs, keeping libcni's cache in cacheDir.
func NewManager(confDir string, binDirs []string, cacheDir string) *Manager {
	return &Manager{confDir: confDir, binDirs: binDirs, cacheDir: cacheDir}
}

// Status reports whether a usable CNI config exists. It is cheap while the
// config directory is unchanged (one directory read), so it can serve the
// kubelet's frequent Status calls.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.refresh(); err != nil {
		return Status{Reason: NotReadyReason, Message: err.Error()}
	}
	return Status{Ready: true, Network: m.current.Name, File: m.file}
}

// refresh reloads the config when the directory changed or nothing usable
// was found last time (a missing plugin binary may have been installed since).
func (m *Manager) refresh() error {
	fp, err := fingerprint(m.confDir)
	if err != nil {
		m.current = nil
		return fmt.Errorf("cannot read CNI config directory %s: %w", m.confDir, err)
	}
	if m.current != nil && fp == m.fingerprint {
		return nil
	}
	m.current, m.file, m.fingerprint = nil, "", fp
	list, file, err := m.load()
	if err != nil {
		return err
	}
	m.current, m.file = list, file
	return nil
}

// load returns the first usable network config in file-name order, as the
// kubelet's CNI convention has it; the error lists why each file was skipped.
func (m *Manager) load() (*libcni.NetworkConfigList, string, error) {
	files, err := libcni.ConfFiles(m.confDir, confExtensions)
	if err != nil {
		return nil, "", fmt.Errorf("cannot read CNI config directory %s: %w", m.confDir, err)
	}
	if len(files) == 0 {
		return nil, "", fmt.Errorf("no CNI network config found in %s", m.confDir)
	}
	sort.Strings(files)
	var problems []string
	for _, f := range files {
		list, err := loadFile(f)
		if err == nil {
			err = m.checkPlugins(list)
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", filepath.Base(f), err))
			continue
		}
		return list, f, nil
	}
	return nil, "", fmt.Errorf("no usable CNI network config in %s: %s", m.confDir, strings.Join(problems, "; "))
}

func loadFile(path string) (*libcni.NetworkConfigList, error) {
	if filepath.Ext(path) == ".conflist" {
		return libcni.NetworkConfFromFile(path)
	}
	// A single-plugin .conf/.json file: still common, so upconvert it.
	conf, err := libcni.ConfFromFile(path) //nolint:staticcheck // single-plugin files remain in use
	if err != nil {
		return nil, err
	}
	if conf.Network.Type == "" {
		return nil, errors.New(`no plugin "type"`)
	}
	return libcni.ConfListFromConf(conf) //nolint:staticcheck // see above
}

// checkPlugins makes sure every plugin of the list can be executed, and
// the loopback plugin that peapod itself runs for every pod.
func (m *Manager) checkPlugins(list *libcni.NetworkConfigList) error {
	if len(list.Plugins) == 0 {
		return errors.New("no plugins")
	}
	types := []string{"loopback"}
	for _, p := range list.Plugins {
		types = append(types, p.Network.Type)
	}
	for _, t := range types {
		if _, err := invoke.FindInPath(t, m.binDirs); err != nil {
			return fmt.Errorf("plugin %q not found in %s", t, strings.Join(m.binDirs, ":"))
		}
	}
	return nil
}

// fingerprint summarises the config files of dir (names, sizes, mtimes), so a
// change to any of them is noticed without reading their contents.
func fingerprint(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "missing", nil
	}
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			continue // removed while listing: the next call sees the change
		}
		fmt.Fprintf(&b, "%s/%d/%d\n", e.Name(), info.Size(), info.ModTime().UnixNano())
	}
	return b.String(), nil
}
