// Package profiles manages the profiles (XMPP accounts the daemon acts for)
// and their per-profile parameters: creation, listing, deletion, typed and
// validated values resolved with the precedence profile > daemon config >
// declared default, secrets encrypted at rest, change notifications (the
// bus event [ParamChanged] and the API event "param.changed"), and the
// ProfileService of the API (see NewHandler).
//
// Storage: a profile is a Profile row; connection.jid and
// connection.autoconnect are its columns (one source of truth), every other
// parameter set for the profile is a Param row holding its canonical text,
// or for a secret its value sealed with the daemon's secrets.Box, bound to
// "profile/key". Values are never logged, and secrets are masked
// (params.Mask) in every answer and event.
package profiles

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"example.org/backend/core"
	"example.org/backend/core/jid"
	"example.org/backend/core/params"
	"example.org/backend/core/secrets"
	"example.org/backend/core/session"
	"example.org/backend/core/storage"
	"example.org/backend/ent"
	"example.org/backend/ent/param"
	"example.org/backend/ent/profile"
	"example.org/backend/triggers"
)

// Errors of the service; the API maps them to Connect codes (see NewHandler).
var (
	// ErrNotFound: no profile of that name (NotFound).
	ErrNotFound = errors.New("profile not found")
	// ErrExists: a profile of that name exists already (AlreadyExists).
	ErrExists = errors.New("profile already exists")
	// ErrInvalidName: the name is not acceptable (InvalidArgument).
	ErrInvalidName = errors.New("invalid profile name")
	// ErrSecretUnavailable: a secret is not set, or cannot be decrypted
	// (FailedPrecondition); the message says how to set it again.
	ErrSecretUnavailable = errors.New("secret unavailable")
)

// StateDisconnected is the state of a profile without a session.
const StateDisconnected = "disconnected"

// StateFunc returns the session state of a profile ("disconnected",
// "connecting", "connected", ...). The session layer provides it through
// Service.SetStateFunc.
type StateFunc func(profile string) string

// Profile describes a profile.
type Profile struct {
	Name string
	// JID is the bare JID of the account.
	JID         string
	Autoconnect bool
	// State is the session state (StateDisconnected without a session layer).
	State string
}

// CreateRequest is what Create needs.
type CreateRequest struct {
	// Name of the profile: [a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}.
	Name string
	// JID is the bare JID of the account (required).
	JID string
	// Password is the account's password; "" leaves it unset.
	Password string
	// Params holds other parameters to set (key → raw text).
	Params map[string]string
}

// ParamChange is the payload of the bus event ParamChanged.
type ParamChange struct {
	Profile string
	Key     string
	Type    params.Type
	// Value is the new canonical value; params.Mask for a secret.
	Value          string
	Source         params.Source
	Secret         bool
	NeedsReconnect bool
}

// ParamChanged fires after a profile's parameter was changed and committed.
var ParamChanged = triggers.NewEvent[ParamChange]("params.changed",
	"A parameter of a profile was changed (after commit); secret values are masked.")

// Created fires after a profile was created and committed.
var Created = triggers.NewEvent[Profile]("profile.created",
	"A profile was created (after commit).")

// Deleted fires after a profile was deleted and committed (its payload is
// the profile's name): what plugins kept about it must go.
var Deleted = triggers.NewEvent[string]("profile.deleted",
	"A profile was deleted (after commit).")

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$`)

// ValidateName checks a profile name.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w %s: use 1 to 64 ASCII letters, digits, '_', '.' or '-', starting with a letter or a digit",
			ErrInvalidName, quote(name))
	}
	return nil
}

// Service manages profiles and their parameters. It is safe for concurrent
// use.
type Service struct {
	store  *storage.Store
	reg    *params.Registry
	box    *secrets.Box
	bus    *triggers.Bus
	config map[string]string
	log    *slog.Logger
	state  atomic.Pointer[StateFunc]
	// connInfo describes a profile's live stream (installed by the
	// session layer).
	connInfo atomic.Pointer[ConnInfoFunc]
	// beforeDelete runs before a profile is deleted (the session layer
	// closes the profile's session there).
	beforeDelete atomic.Pointer[func(ctx context.Context, name string)]
}

// New returns the service over the host's store, parameter registry,
// secrets box and bus. config is the daemon config's `[params]`
// table (key → raw text), already checked with Registry.CheckConfig.
func New(h *core.Host, config map[string]string) *Service {
	cfg := make(map[string]string, len(config))
	for k, v := range config {
		cfg[k] = v
	}
	log := h.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{store: h.Store, reg: h.Params, box: h.Secrets, bus: h.Bus, config: cfg,
		log: log.With("component", "profiles")}
}

// SetBeforeDelete installs f, run before a profile is deleted.
func (s *Service) SetBeforeDelete(f func(ctx context.Context, name string)) {
	s.beforeDelete.Store(&f)
}

// ConnInfoFunc returns what a profile's live stream negotiated, false
// when the profile has none.
type ConnInfoFunc func(profile string) (session.ConnInfo, bool)

// SetConnInfoFunc installs the session layer's lookup of live streams.
func (s *Service) SetConnInfoFunc(f ConnInfoFunc) {
	s.connInfo.Store(&f)
}

// ConnInfo describes the profile's live stream; false when it has none.
func (s *Service) ConnInfo(name string) (session.ConnInfo, bool) {
	if f := s.connInfo.Load(); f != nil && *f != nil {
		return (*f)(name)
	}
	return session.ConnInfo{}, false
}

// SetStateFunc installs the session layer's state lookup (nil restores
// "disconnected" for every profile).
func (s *Service) SetStateFunc(f StateFunc) {
	if f == nil {
		s.state.Store(nil)
		return
	}
	s.state.Store(&f)
}

func (s *Service) stateOf(name string) string {
	if f := s.state.Load(); f != nil {
		if st := (*f)(name); st != "" {
			return st
		}
	}
	return StateDisconnected
}

func (s *Service) info(p *ent.Profile) Profile {
	return Profile{Name: p.Name, JID: p.Jid, Autoconnect: p.Autoconnect, State: s.stateOf(p.Name)}
}

// validate normalises raw for key: the registry's type checks, then the
// core's own checks of its connection parameters. It returns the
// declaration and the canonical value.
func (s *Service) validate(key, raw string) (params.Decl, string, error) {
	canon, err := s.reg.Normalize(key, raw)
	if err != nil {
		return params.Decl{}, "", err
	}
	d, _ := s.reg.Lookup(key)
	if chk := extraChecks[key]; chk != nil && d.Owner == Owner {
		v, verr := chk(canon)
		if verr != nil {
			return d, "", verr
		}
		canon = v
	}
	return d, canon, nil
}

// aad binds a sealed secret to its profile and key.
func aad(profileName, key string) string { return profileName + "/" + key }

func splitKey(key string) (category, name string) {
	i := strings.IndexByte(key, '.')
	return key[:i], key[i+1:]
}

// mirrored reports whether key is stored as a column of the profile.
func mirrored(key string) bool { return key == KeyJID || key == KeyAutoconnect }

// Create validates everything, then creates the profile and its parameters
// in one transaction. A refused request writes nothing.
func (s *Service) Create(ctx context.Context, req CreateRequest) (Profile, error) {
	if err := ValidateName(req.Name); err != nil {
		return Profile{}, err
	}
	raw := make(map[string]string, len(req.Params)+2)
	for k, v := range req.Params {
		raw[k] = v
	}
	if req.JID != "" {
		raw[KeyJID] = req.JID
	}
	if req.Password != "" {
		raw[KeyPassword] = req.Password
	}
	if _, ok := raw[KeyJID]; !ok {
		return Profile{}, &params.ValueError{Key: KeyJID, Reason: "a profile needs the JID of its account", Accepts: "a bare JID user@domain"}
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	type row struct {
		key, value string
		secret     []byte
	}
	var rows []row
	var jidValue string
	autoconnect := false
	for _, k := range keys {
		d, v, err := s.validate(k, raw[k])
		if err != nil {
			return Profile{}, err
		}
		switch {
		case k == KeyJID:
			jidValue = v
		case k == KeyAutoconnect:
			autoconnect = v == "true"
		case d.Secret():
			sealed, err := s.seal(v, req.Name, k)
			if err != nil {
				return Profile{}, err
			}
			rows = append(rows, row{key: k, secret: sealed})
		default:
			rows = append(rows, row{key: k, value: v})
		}
	}

	var created *ent.Profile
	err := s.store.WithTx(ctx, func(tx *ent.Tx) error {
		exists, err := tx.Profile.Query().Where(profile.Name(req.Name)).Exist(ctx)
		if err != nil {
			return fmt.Errorf("look up profile: %w", err)
		}
		if exists {
			return existsError(req.Name)
		}
		p, err := tx.Profile.Create().SetName(req.Name).SetJid(jidValue).SetAutoconnect(autoconnect).Save(ctx)
		if err != nil {
			if ent.IsConstraintError(err) {
				return existsError(req.Name)
			}
			return fmt.Errorf("create profile: %w", err)
		}
		bulk := make([]*ent.ParamCreate, 0, len(rows))
		for _, r := range rows {
			cat, name := splitKey(r.key)
			c := tx.Param.Create().SetProfileID(p.ID).SetCategory(cat).SetName(name).SetValue(r.value)
			if r.secret != nil {
				c.SetSecret(r.secret)
			}
			bulk = append(bulk, c)
		}
		if len(bulk) > 0 {
			if err := tx.Param.CreateBulk(bulk...).Exec(ctx); err != nil {
				return fmt.Errorf("store parameters: %w", err)
			}
		}
		created = p
		return nil
	})
	if err != nil {
		return Profile{}, err
	}
	s.log.Info("profile created", "profile", req.Name, "jid", jidValue)
	info := s.info(created)
	if err := triggers.Notify(ctx, s.bus, Created, info); err != nil {
		s.log.Warn("profile created: an observer failed", "profile", req.Name, "err", err)
	}
	return info, nil
}

func existsError(name string) error {
	return fmt.Errorf("%w: %s (choose another name, or delete it first with `backend profile delete %s`)", ErrExists, quote(name), name)
}

func notFoundError(name string) error {
	return fmt.Errorf("%w: %s (see `backend profile list`)", ErrNotFound, quote(name))
}

func (s *Service) seal(v, profileName, key string) ([]byte, error) {
	if s.box == nil {
		return nil, fmt.Errorf("%s: %w: no secret key is configured", key, ErrSecretUnavailable)
	}
	sealed, err := s.box.Seal([]byte(v), aad(profileName, key))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return sealed, nil
}

// List returns every profile, sorted by name.
func (s *Service) List(ctx context.Context) ([]Profile, error) {
	ps, err := s.store.Client.Profile.Query().Order(ent.Asc(profile.FieldName)).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("list profiles: %w", err)
	}
	out := make([]Profile, 0, len(ps))
	for _, p := range ps {
		out = append(out, s.info(p))
	}
	return out, nil
}

// Profile returns one profile.
func (s *Service) Profile(ctx context.Context, name string) (Profile, error) {
	p, err := s.find(ctx, s.store.Client, name)
	if err != nil {
		return Profile{}, err
	}
	return s.info(p), nil
}

func (s *Service) find(ctx context.Context, c *ent.Client, name string) (*ent.Profile, error) {
	p, err := c.Profile.Query().Where(profile.Name(name)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, notFoundError(name)
	}
	if err != nil {
		return nil, fmt.Errorf("look up profile %s: %w", quote(name), err)
	}
	return p, nil
}

// Delete deletes a profile and, by cascade, everything it owns.
func (s *Service) Delete(ctx context.Context, name string) error {
	if _, err := s.Profile(ctx, name); err != nil {
		return err
	}
	if f := s.beforeDelete.Load(); f != nil {
		(*f)(ctx, name)
	}
	err := s.store.WithTx(ctx, func(tx *ent.Tx) error {
		p, err := s.find(ctx, tx.Client(), name)
		if err != nil {
			return err
		}
		if err := tx.Profile.DeleteOne(p).Exec(ctx); err != nil {
			return fmt.Errorf("delete profile %s: %w", quote(name), err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.log.Info("profile deleted", "profile", name)
	if err := triggers.Notify(ctx, s.bus, Deleted, name); err != nil {
		s.log.Warn("profile deleted: an observer failed", "profile", name, "err", err)
	}
	return nil
}

// stored is a profile with its parameter rows.
type stored struct {
	p    *ent.Profile
	rows map[string]*ent.Param // by key
}

func (s *Service) load(ctx context.Context, name string) (stored, error) {
	p, err := s.find(ctx, s.store.Client, name)
	if err != nil {
		return stored{}, err
	}
	rows, err := s.store.Client.Param.Query().Where(param.ProfileID(p.ID)).All(ctx)
	if err != nil {
		return stored{}, fmt.Errorf("load parameters of %s: %w", quote(name), err)
	}
	st := stored{p: p, rows: make(map[string]*ent.Param, len(rows))}
	for _, r := range rows {
		st.rows[r.Category+"."+r.Name] = r
	}
	return st, nil
}

// values returns the profile's stored values for params.ResolveAll: the
// canonical text of each row, a placeholder for a set secret, and the
// mirrored columns.
func (s *Service) values(st stored) map[string]string {
	vals := make(map[string]string, len(st.rows)+2)
	for k, r := range st.rows {
		if mirrored(k) {
			continue // the column is the source of truth
		}
		if d, ok := s.reg.Lookup(k); ok && d.Secret() {
			if r.Secret != nil && len(*r.Secret) > 0 {
				vals[k] = "set"
			}
			continue
		}
		vals[k] = r.Value
	}
	if st.p.Jid != "" {
		vals[KeyJID] = st.p.Jid
	}
	vals[KeyAutoconnect] = strconv.FormatBool(st.p.Autoconnect)
	return vals
}

func (s *Service) resolveAll(st stored) []params.Resolved {
	res, err := s.reg.ResolveAll(s.values(st), s.config)
	if err != nil {
		// The errors name keys and sources, never secret values.
		s.log.Warn("ignoring parameter values that are no longer valid", "profile", st.p.Name, "err", err)
	}
	return res
}

// Params returns every declared parameter resolved for the profile, sorted
// by key; secrets show params.Mask when set and "" when not.
func (s *Service) Params(ctx context.Context, name string) ([]params.Resolved, error) {
	st, err := s.load(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.resolveAll(st), nil
}

// Param returns one parameter resolved for the profile.
func (s *Service) Param(ctx context.Context, name, key string) (params.Resolved, error) {
	if _, ok := s.reg.Lookup(key); !ok {
		_, err := s.reg.Normalize(key, "")
		return params.Resolved{}, err
	}
	all, err := s.Params(ctx, name)
	if err != nil {
		return params.Resolved{}, err
	}
	for _, r := range all {
		if r.Decl.Key() == key {
			return r, nil
		}
	}
	_, err = s.reg.Normalize(key, "") // removed meanwhile
	return params.Resolved{}, err
}

// Set validates value for key and stores it as the profile's value, then
// notifies ParamChanged and publishes a "param.changed" API event. A
// refused value writes nothing; the error names the key and what it
// accepts, and never contains a secret.
func (s *Service) Set(ctx context.Context, name, key, value string) (params.Resolved, error) {
	d, canon, err := s.validate(key, value)
	if err != nil {
		return params.Resolved{}, err
	}
	var sealed []byte
	if d.Secret() {
		if sealed, err = s.seal(canon, name, key); err != nil {
			return params.Resolved{}, err
		}
	}
	err = s.store.WithTx(ctx, func(tx *ent.Tx) error {
		p, err := s.find(ctx, tx.Client(), name)
		if err != nil {
			return err
		}
		switch key {
		case KeyJID:
			err = tx.Profile.UpdateOne(p).SetJid(canon).Exec(ctx)
		case KeyAutoconnect:
			err = tx.Profile.UpdateOne(p).SetAutoconnect(canon == "true").Exec(ctx)
		default:
			cat, n := splitKey(key)
			c := tx.Param.Create().SetProfileID(p.ID).SetCategory(cat).SetName(n)
			if sealed != nil {
				c.SetValue("").SetSecret(sealed)
			} else {
				c.SetValue(canon)
			}
			err = c.OnConflictColumns(param.FieldProfileID, param.FieldCategory, param.FieldName).
				Update(func(u *ent.ParamUpsert) {
					if sealed != nil {
						u.SetValue("").SetSecret(sealed)
					} else {
						u.SetValue(canon).ClearSecret()
					}
					u.UpdateUpdatedAt()
				}).Exec(ctx)
		}
		if err != nil {
			return fmt.Errorf("store %s of profile %s: %w", key, quote(name), err)
		}
		return nil
	})
	if err != nil {
		return params.Resolved{}, err
	}
	shown := canon
	if d.Secret() {
		shown = params.Mask
	}
	s.log.Info("parameter changed", "profile", name, "key", key)
	change := ParamChange{Profile: name, Key: key, Type: d.Type, Value: shown, Source: params.SourceProfile, Secret: d.Secret(), NeedsReconnect: d.NeedsReconnect}
	if err := triggers.Notify(ctx, s.bus, ParamChanged, change); err != nil {
		s.log.Warn("params.changed observer failed", "profile", name, "key", key, "err", err)
	}
	return params.Resolved{Decl: d, Value: shown, Source: params.SourceProfile}, nil
}

// Secret decrypts the secret parameter key of a profile, for the code that
// needs it (never for display). An unset secret, or one that cannot be
// decrypted (the key file was lost or replaced), gives an error wrapping
// ErrSecretUnavailable that says how to set it again.
func (s *Service) Secret(ctx context.Context, name, key string) (string, error) {
	st, err := s.load(ctx, name)
	if err != nil {
		return "", err
	}
	return s.secret(st, key)
}

func (s *Service) secret(st stored, key string) (string, error) {
	name := st.p.Name
	again := fmt.Sprintf("set it with `backend profile set %s %s -`", name, key)
	r, ok := st.rows[key]
	if !ok || r.Secret == nil || len(*r.Secret) == 0 {
		return "", fmt.Errorf("profile %s: %w: %s is not set: %s", quote(name), ErrSecretUnavailable, key, again)
	}
	if s.box == nil {
		return "", fmt.Errorf("profile %s: %w: %s cannot be decrypted: no secret key is configured", quote(name), ErrSecretUnavailable, key)
	}
	plain, err := s.box.Open(*r.Secret, aad(name, key))
	switch {
	case errors.Is(err, secrets.ErrWrongKey):
		return "", fmt.Errorf("profile %s: %w: %s was encrypted with another key file than %s (was it lost or replaced?): %s again",
			quote(name), ErrSecretUnavailable, key, s.box.KeyPath(), again)
	case err != nil:
		return "", fmt.Errorf("profile %s: %w: %s cannot be decrypted (damaged or moved): %s again", quote(name), ErrSecretUnavailable, key, again)
	}
	return string(plain), nil
}

// ConnectionSettings returns the resolved, typed connection parameters of a
// profile with its decrypted password, for the session layer.
func (s *Service) ConnectionSettings(ctx context.Context, name string) (Connection, error) {
	st, err := s.load(ctx, name)
	if err != nil {
		return Connection{}, err
	}
	vals := map[string]string{}
	for _, r := range s.resolveAll(st) {
		vals[r.Decl.Key()] = r.Value
	}
	c := Connection{Profile: name, Host: vals[KeyHost], CAFile: vals[KeyCAFile], Resource: vals[KeyResource], DNSServer: vals[KeyDNSServer]}
	if c.JID, err = jid.ParseAccount(vals[KeyJID]); err != nil {
		return Connection{}, fmt.Errorf("profile %s: %s: %w (set it with `backend profile set %s %s JID`)", quote(name), KeyJID, err, name, KeyJID)
	}
	port, err := params.ParseInt(vals[KeyPort])
	if err != nil {
		return Connection{}, fmt.Errorf("profile %s: %s: %w", quote(name), KeyPort, err)
	}
	c.Port = int(port) // 0: discovery
	if c.DirectTLS, err = params.ParseBool(vals[KeyDirectTLS]); err != nil {
		return Connection{}, fmt.Errorf("profile %s: %s: %w", quote(name), KeyDirectTLS, err)
	}
	if c.TLSVerify, err = params.ParseBool(vals[KeyTLSVerify]); err != nil {
		return Connection{}, fmt.Errorf("profile %s: %s: %w", quote(name), KeyTLSVerify, err)
	}
	if c.Autoconnect, err = params.ParseBool(vals[KeyAutoconnect]); err != nil {
		return Connection{}, fmt.Errorf("profile %s: %s: %w", quote(name), KeyAutoconnect, err)
	}
	if c.Password, err = s.secret(st, KeyPassword); err != nil {
		return Connection{}, err
	}
	return c, nil
}

// TypedValue returns the JSON value of a canonical text of type t: a
// number for an int, a boolean for a bool, an array for a list, a string
// otherwise (params.Mask for a set secret); nil for an unset secret or a
// value that does not parse.
func TypedValue(t params.Type, canonical string) any {
	switch t {
	case params.TypeInt:
		if v, err := params.ParseInt(canonical); err == nil {
			return v
		}
		return nil
	case params.TypeBool:
		if v, err := params.ParseBool(canonical); err == nil {
			return v
		}
		return nil
	case params.TypeList:
		if v, err := params.ParseList(canonical); err == nil {
			return v
		}
		return nil
	case params.TypeSecret:
		if canonical == "" {
			return nil
		}
		return params.Mask
	}
	return canonical
}

// quote renders a user-given (non-secret) text in an error, shortened.
func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strconv.Quote(s)
}
