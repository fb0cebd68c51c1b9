// Package hsmenv creates a real SoftHSM2 PKCS#11 token for meshca's
// integration tests.
//
// It owns the test token only: a SoftHSM2 configuration and token
// directory in a temporary folder, the token initialised with
// softhsm2-util, a 0600 file holding the user PIN, the pkcs11: URI meshca's
// keyStore.uri takes, and a read-only look at the token's objects (labels,
// classes and the private-key attributes of PKCS#11 v2.40 §4.9, such as
// CKA_EXTRACTABLE) through the PKCS#11 API. It must not hold any meshca
// logic: tests create keys through ca/keys or the meshca binary.
//
// SoftHSM2 reads its configuration from the file that the SOFTHSM2_CONF
// environment variable names; New sets that variable for the test (and so
// for every child process it starts) with t.Setenv, so a test that uses
// an Env cannot run in parallel with others. When softhsm2-util or the
// module is missing, New fails with a message that says to run
// `make deps`; tests never skip.
package hsmenv

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/miekg/pkcs11"
)

// ModulePath is where Debian's softhsm2 package installs the PKCS#11 module.
const ModulePath = "/usr/lib/softhsm/libsofthsm2.so"

// Env is an initialised SoftHSM2 token in a temporary folder.
type Env struct {
	// Dir holds the configuration, the token directory and the PIN file.
	Dir string
	// Conf is the SoftHSM2 configuration file (SOFTHSM2_CONF).
	Conf string
	// Module is the PKCS#11 module's path.
	Module string
	// Token is the token's label.
	Token string
	// PINFile holds the user PIN, mode 0600. The PIN never appears in URI.
	PINFile string
	// URI is the keyStore.uri for meshca: module-path, token and
	// pin-source (RFC 7512 with the p11-kit pin-source query attribute).
	URI string

	pin string
}

type options struct {
	token string
}

// Option configures New.
type Option func(*options)

// WithToken sets the token label (default "meshca").
func WithToken(label string) Option { return func(o *options) { o.token = label } }

// New initialises a fresh token and sets SOFTHSM2_CONF for the test.
func New(t testing.TB, opts ...Option) *Env {
	t.Helper()
	o := options{token: "meshca"}
	for _, opt := range opts {
		opt(&o)
	}
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		t.Fatalf("hsmenv: softhsm2-util is not installed: run make deps (Debian package softhsm2)")
	}
	if _, err := os.Stat(ModulePath); err != nil {
		t.Fatalf("hsmenv: the SoftHSM2 PKCS#11 module %s is missing: run make deps (Debian package softhsm2)", ModulePath)
	}
	dir := t.TempDir()
	e := &Env{
		Dir:     dir,
		Conf:    filepath.Join(dir, "softhsm2.conf"),
		Module:  ModulePath,
		Token:   o.token,
		PINFile: filepath.Join(dir, "pin"),
		pin:     randomHex(t, 8),
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatalf("hsmenv: %v", err)
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(e.Conf, []byte(conf), 0o600); err != nil {
		t.Fatalf("hsmenv: %v", err)
	}
	if err := os.WriteFile(e.PINFile, []byte(e.pin), 0o600); err != nil {
		t.Fatalf("hsmenv: %v", err)
	}
	t.Setenv("SOFTHSM2_CONF", e.Conf)
	// The PINs reach softhsm2-util as arguments: they are random, local to
	// this temporary token and never logged (the output is shown only on
	// failure, and softhsm2-util does not echo them).
	cmd := exec.Command(util, "--init-token", "--free", "--label", e.Token,
		"--so-pin", randomHex(t, 8), "--pin", e.pin)
	cmd.Env = e.Environ()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hsmenv: softhsm2-util --init-token: %v\n%s", err, out)
	}
	e.URI = fmt.Sprintf("pkcs11:module-path=%s;token=%s?pin-source=%s", e.Module, e.Token, e.PINFile)
	return e
}

// Environ returns the process environment with SOFTHSM2_CONF pointing at
// this token's configuration, for child processes that set their own Env.
func (e *Env) Environ() []string {
	return append(os.Environ(), "SOFTHSM2_CONF="+e.Conf)
}

// Object is one object on the token, as the PKCS#11 API reports it.
type Object struct {
	// Class is CKA_CLASS (pkcs11.CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, ...).
	Class uint
	// Label is CKA_LABEL and ID is CKA_ID.
	Label, ID string
	// KeyType is CKA_KEY_TYPE (pkcs11.CKK_EC, CKK_RSA) for keys.
	KeyType uint
	// Public is, for public keys, CKA_EC_POINT (a DER OCTET STRING holding
	// the uncompressed point) of an EC key or CKA_MODULUS of an RSA key.
	Public []byte
	// For private keys: CKA_TOKEN, CKA_SENSITIVE, CKA_EXTRACTABLE,
	// CKA_NEVER_EXTRACTABLE and CKA_LOCAL (generated on the token).
	Token, Sensitive, Extractable, NeverExtractable, Local bool
}

// Objects lists every object on the token, logged in as the user. It
// opens its own session; the module may already be in use by the test
// process (a key manager under test), which PKCS#11 allows
// (CKR_CRYPTOKI_ALREADY_INITIALIZED is not an error here, and the module
// is then left initialised).
func (e *Env) Objects() ([]Object, error) {
	p := pkcs11.New(e.Module)
	if p == nil {
		return nil, fmt.Errorf("load PKCS#11 module %s", e.Module)
	}
	defer p.Destroy()
	owned := true
	if err := p.Initialize(); err != nil {
		var perr pkcs11.Error
		if !errors.As(err, &perr) || perr != pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED {
			return nil, fmt.Errorf("C_Initialize: %w", err)
		}
		owned = false
	}
	if owned {
		defer p.Finalize()
	}
	slot, err := e.slot(p)
	if err != nil {
		return nil, err
	}
	sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		return nil, fmt.Errorf("C_OpenSession: %w", err)
	}
	defer p.CloseSession(sh)
	if err := p.Login(sh, pkcs11.CKU_USER, e.pin); err != nil {
		var perr pkcs11.Error
		if !errors.As(err, &perr) || perr != pkcs11.CKR_USER_ALREADY_LOGGED_IN {
			return nil, fmt.Errorf("C_Login: %w", err)
		}
	}
	if err := p.FindObjectsInit(sh, nil); err != nil {
		return nil, fmt.Errorf("C_FindObjectsInit: %w", err)
	}
	var handles []pkcs11.ObjectHandle
	for {
		hs, _, err := p.FindObjects(sh, 64)
		if err != nil {
			_ = p.FindObjectsFinal(sh)
			return nil, fmt.Errorf("C_FindObjects: %w", err)
		}
		if len(hs) == 0 {
			break
		}
		handles = append(handles, hs...)
	}
	if err := p.FindObjectsFinal(sh); err != nil {
		return nil, fmt.Errorf("C_FindObjectsFinal: %w", err)
	}
	var out []Object
	for _, h := range handles {
		o, err := readObject(p, sh, h)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

func (e *Env) slot(p *pkcs11.Ctx) (uint, error) {
	slots, err := p.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("C_GetSlotList: %w", err)
	}
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err == nil && ti.Label == e.Token {
			return s, nil
		}
	}
	return 0, fmt.Errorf("no token labelled %q in %s", e.Token, e.Conf)
}

func readObject(p *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) (Object, error) {
	attrs, err := p.GetAttributeValue(sh, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
		pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
	})
	if err != nil {
		return Object{}, fmt.Errorf("C_GetAttributeValue: %w", err)
	}
	o := Object{Class: ulong(attrs[0].Value), Label: string(attrs[1].Value), ID: string(attrs[2].Value)}
	if o.Class != pkcs11.CKO_PRIVATE_KEY && o.Class != pkcs11.CKO_PUBLIC_KEY {
		return o, nil
	}
	kt, err := p.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil)})
	if err != nil {
		return Object{}, fmt.Errorf("C_GetAttributeValue(CKA_KEY_TYPE): %w", err)
	}
	o.KeyType = ulong(kt[0].Value)
	if o.Class == pkcs11.CKO_PUBLIC_KEY {
		typ := uint(pkcs11.CKA_EC_POINT)
		if o.KeyType == pkcs11.CKK_RSA {
			typ = pkcs11.CKA_MODULUS
		}
		pub, err := p.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(typ, nil)})
		if err != nil {
			return Object{}, fmt.Errorf("C_GetAttributeValue(public key): %w", err)
		}
		o.Public = pub[0].Value
		return o, nil
	}
	attrs, err = p.GetAttributeValue(sh, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, nil),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_NEVER_EXTRACTABLE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_LOCAL, nil),
	})
	if err != nil {
		return Object{}, fmt.Errorf("C_GetAttributeValue(private key): %w", err)
	}
	o.Token, o.Sensitive, o.Extractable = isTrue(attrs[0].Value), isTrue(attrs[1].Value), isTrue(attrs[2].Value)
	o.NeverExtractable, o.Local = isTrue(attrs[3].Value), isTrue(attrs[4].Value)
	return o, nil
}

// PrivateKey returns the private key object labelled label, or an error
// if there is not exactly one.
func (e *Env) PrivateKey(label string) (Object, error) {
	objs, err := e.Objects()
	if err != nil {
		return Object{}, err
	}
	var found []Object
	for _, o := range objs {
		if o.Class == pkcs11.CKO_PRIVATE_KEY && o.Label == label {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		return Object{}, fmt.Errorf("token %q holds %d private keys labelled %q, want 1", e.Token, len(found), label)
	}
	return found[0], nil
}

// PublicKey returns the public key object labelled label, or an error if
// there is not exactly one.
func (e *Env) PublicKey(label string) (Object, error) {
	objs, err := e.Objects()
	if err != nil {
		return Object{}, err
	}
	var found []Object
	for _, o := range objs {
		if o.Class == pkcs11.CKO_PUBLIC_KEY && o.Label == label {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		return Object{}, fmt.Errorf("token %q holds %d public keys labelled %q, want 1", e.Token, len(found), label)
	}
	return found[0], nil
}

// PrivateKeyLabels lists the labels of the token's private keys.
func (e *Env) PrivateKeyLabels() ([]string, error) {
	objs, err := e.Objects()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range objs {
		if o.Class == pkcs11.CKO_PRIVATE_KEY {
			out = append(out, o.Label)
		}
	}
	return out, nil
}

// CK_BBOOL is one byte; CK_ULONG is the platform's unsigned long, which
// miekg/pkcs11 returns in native byte order (little-endian on the
// platforms meshca's tests run on).
func isTrue(b []byte) bool { return len(b) == 1 && b[0] != 0 }

func ulong(b []byte) uint {
	var v uint
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint(b[i])
	}
	return v
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("hsmenv: %v", err)
	}
	return hex.EncodeToString(b)
}
