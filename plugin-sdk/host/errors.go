package host

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/go-plugin"
)

// ErrPluginDown is wrapped by the errors of calls to a plugin whose process
// is not running (it exited, crashed, or was killed): the call was not
// served, and may be retried once the plugin is back.
var ErrPluginDown = errors.New("plugin is not running")

// ErrUnimplemented is wrapped by the errors of calls the plugin does not
// implement (e.g. Match on a plugin without a Match handler).
var ErrUnimplemented = errors.New("not implemented by the plugin")

// ErrChecksumMismatch is wrapped by ChecksumError.
var ErrChecksumMismatch = errors.New("plugin checksum does not match its pin")

// ChecksumError refuses a plugin executable whose sha256 is not the pinned
// one. Nothing was executed.
type ChecksumError struct {
	Plugin, Path string
	// Want is the pinned sha256 (hex), Got the file's ("" if unreadable).
	Want, Got string
}

func (e *ChecksumError) Error() string {
	got := e.Got
	if got == "" {
		got = "unknown (unreadable)"
	}
	return fmt.Sprintf("plugin %s: refusing to run %s: its sha256 is %s but the configuration pins %s (reinstall the plugin or update its pin)",
		e.Plugin, e.Path, got, e.Want)
}

// Unwrap returns ErrChecksumMismatch.
func (e *ChecksumError) Unwrap() error { return ErrChecksumMismatch }

// VersionError reports a plugin that speaks a protocol version the daemon
// does not.
type VersionError struct {
	Plugin, Path string
	// PluginVersion is the protocol version the plugin offered.
	PluginVersion int
	// HostVersions are the versions this daemon speaks.
	HostVersions []int
}

func (e *VersionError) Error() string {
	maxHost := 0
	for _, v := range e.HostVersions {
		maxHost = max(maxHost, v)
	}
	what := fmt.Sprintf("plugin %s (%s) speaks plugin protocol %d, this daemon speaks %s",
		e.Plugin, e.Path, e.PluginVersion, joinInts(e.HostVersions))
	if e.PluginVersion > maxHost {
		return what + ": upgrade the daemon, or install a release of the plugin built for protocol " + strconv.Itoa(maxHost)
	}
	return what + fmt.Sprintf(": upgrade the plugin (rebuild it with a current example.org/backend/plugin-sdk, protocol %d)", maxHost)
}

func joinInts(vs []int) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, " and ")
}

var versionRE = regexp.MustCompile(`incompatible API version with plugin\. Plugin version: (-?\d+)`)

// startError rewrites go-plugin's start-up errors into messages that say
// which plugin failed, why, and what to do.
func startError(cfg *Config, path string, hostVersions []int, stderr *tailWriter, err error) error {
	tail := ""
	if s := stderr.String(); s != "" {
		tail = "; its last stderr lines:\n" + s
	}
	msg := err.Error()
	switch {
	case errors.Is(err, plugin.ErrChecksumsDoNotMatch):
		return &ChecksumError{Plugin: cfg.Name, Path: path, Want: strings.ToLower(cfg.SHA256), Got: fileSHA256(path)}
	case versionRE.MatchString(msg):
		v, _ := strconv.Atoi(versionRE.FindStringSubmatch(msg)[1])
		return &VersionError{Plugin: cfg.Name, Path: path, PluginVersion: v, HostVersions: hostVersions}
	case strings.Contains(msg, "incompatible core API version"):
		return fmt.Errorf("plugin %s (%s) uses an incompatible go-plugin core protocol: rebuild it with a current example.org/backend/plugin-sdk", cfg.Name, path)
	case strings.HasPrefix(msg, "Unrecognized remote plugin message: "):
		first, _, _ := strings.Cut(strings.TrimPrefix(msg, "Unrecognized remote plugin message: "), "\n")
		if strings.TrimSpace(first) == "" {
			return fmt.Errorf("plugin %s (%s) exited during start-up, before its handshake (is it a backend plugin?)%s", cfg.Name, path, tail)
		}
		return fmt.Errorf("plugin %s (%s) wrote to stdout before the handshake, first line %q: a plugin must call sdk.Serve first and never print to stdout%s",
			cfg.Name, path, first, tail)
	case strings.Contains(msg, "plugin exited before we could connect"):
		return fmt.Errorf("plugin %s (%s) exited during start-up%s", cfg.Name, path, tail)
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return fmt.Errorf("plugin %s (%s) did not complete its handshake within %s%s", cfg.Name, path, cfg.StartTimeout, tail)
	}
	return fmt.Errorf("start plugin %s (%s): %w%s", cfg.Name, path, err, tail)
}

func fileSHA256(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}
