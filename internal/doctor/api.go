package doctor

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"strings"
	"time"
)

// ValidatorResults is what the validator's store holds for the API.
type ValidatorResults struct {
	Path string
	// Miners is how many miners have a Proof-of-GPU result; Newest is the
	// newest result's time (zero: none).
	Miners int
	Newest time.Time
}

// Certificate is the API's TLS certificate.
type Certificate struct {
	// Names are its DNS names and IP addresses.
	Names               []string
	NotBefore, NotAfter time.Time
}

// File describes a file.
type File struct {
	Exists bool
	Mode   fs.FileMode
}

// Token is what the API's store says of a token.
type Token struct {
	ID, Name string
	// Problem is why it does not authenticate ("" when it does): unknown,
	// revoked or expired.
	Problem string
	Admin   bool
}

// API thresholds.
const (
	// staleResults: the validator sweeps every 100 blocks (~20 min); no
	// result for this long means it is not running.
	staleResults = 3 * time.Hour
	// certRenewal: warn this long before the certificate expires.
	certRenewal = 14 * 24 * time.Hour
)

func checkValidatorResults(ctx context.Context, _ Config, p Probes) Result {
	v, err := p.ValidatorResults(ctx)
	switch {
	case err != nil:
		return res(Fail, "validator results not readable: "+err.Error(),
			"the API offers only miners this validator verified with Proof-of-GPU; without its results it offers nothing and every allocation fails with no_offer",
			"point --api.validator-data at the validator's state directory (the one holding validator.db), readable by the API's user, and run the validator with the same wallet")
	case v.Miners == 0:
		return res(Warn, v.Path+" holds no Proof-of-GPU result",
			"the validator has not tested any miner yet: nothing is offered",
			"run nicompute validator with the same wallet and wait for its first sweep (nicompute doctor --role validator checks it)")
	}
	age := p.Now().Sub(v.Newest)
	found := fmt.Sprintf("%d miners tested, newest result %s ago (%s)", v.Miners, age.Round(time.Minute), v.Path)
	if age > staleResults {
		return res(Warn, found, "the validator seems stopped: what the API offers goes stale and miners that went down are still offered",
			"check that nicompute validator runs with the same wallet and --validator.data")
	}
	return pass(found)
}

func checkAPIListen(_ context.Context, c Config, _ Probes) Result {
	host, _, err := net.SplitHostPort(c.APIListen)
	if err != nil {
		return res(Fail, fmt.Sprintf("--api.listen %q is not HOST:PORT", c.APIListen), "the API cannot start", "pass --api.listen HOST:PORT")
	}
	ip, perr := netip.ParseAddr(host)
	loopback := host == "localhost" || perr == nil && ip.IsLoopback()
	switch {
	case loopback:
		return pass(c.APIListen + ": loopback only (renters reach it through a proxy or a tunnel)")
	case c.TLS:
		return pass(c.APIListen + " over HTTPS")
	}
	return res(Warn, c.APIListen+" over plain HTTP",
		"API tokens and renters' requests cross the network unencrypted: anyone on the path can read a token and use it",
		"serve HTTPS with --api.tls-cert and --api.tls-key, or bind the API to loopback behind a proxy that terminates TLS")
}

func checkCertificate(ctx context.Context, c Config, p Probes) Result {
	if !c.TLS {
		return pass("none configured: the API serves plain HTTP")
	}
	cert, err := p.Certificate(ctx)
	if err != nil {
		return res(Fail, "certificate not usable: "+err.Error(), "the API refuses to start with it",
			"pass --api.tls-cert and --api.tls-key naming a PEM certificate and its private key, readable by the API's user")
	}
	now := p.Now()
	found := fmt.Sprintf("valid %s to %s for %s", cert.NotBefore.UTC().Format("2006-01-02"), cert.NotAfter.UTC().Format("2006-01-02"), strings.Join(cert.Names, ", "))
	switch left := cert.NotAfter.Sub(now); {
	case now.Before(cert.NotBefore):
		return res(Fail, found+": not valid yet", "clients refuse the connection", "check the clock, or use a certificate valid now")
	case left <= 0:
		return res(Fail, found+": expired", "clients refuse the connection: renters cannot reach the API", "renew the certificate and restart the API")
	case left < certRenewal:
		return res(Warn, fmt.Sprintf("%s: expires in %s", found, left.Round(time.Hour)), "when it expires, clients refuse the connection",
			"renew the certificate, then restart the API")
	}
	return pass(found)
}

func checkAPIStore(_ context.Context, c Config, p Probes) Result {
	f, err := p.File(c.APIStore)
	switch {
	case err != nil:
		return res(Warn, c.APIStore+" not readable: "+err.Error(), "the API's state could not be checked", "run doctor as the API's user")
	case !f.Exists:
		return pass(c.APIStore + " not created yet (the API creates it at its first start)")
	case f.Mode.Perm()&0o077 != 0:
		return res(Fail, fmt.Sprintf("%s has mode %04o", c.APIStore, f.Mode.Perm()),
			"it holds the RSA keys that own every rented lease and the webhooks' signing secrets: whoever reads it can act on the leases",
			"chmod 600 "+c.APIStore)
	}
	return pass(fmt.Sprintf("%s, mode %04o", c.APIStore, f.Mode.Perm()))
}

func checkTokenFile(ctx context.Context, c Config, p Probes) Result {
	if c.TokenFile == "" {
		return pass("none named (--api.token-file)")
	}
	f, err := p.File(c.TokenFile)
	switch {
	case err != nil || !f.Exists:
		found := c.TokenFile + " does not exist"
		if err != nil {
			found = c.TokenFile + " not readable: " + err.Error()
		}
		return res(Fail, found, "the token cannot be used from this file", "check --api.token-file")
	case f.Mode.Perm()&0o077 != 0:
		return res(Fail, fmt.Sprintf("%s has mode %04o", c.TokenFile, f.Mode.Perm()),
			"anyone who can read it controls the API: every tenant's allocations and every token",
			"chmod 600 "+c.TokenFile)
	}
	tok, err := p.Token(ctx)
	switch {
	case err != nil:
		return res(Warn, "the token could not be checked: "+err.Error(), "whether it still works is unknown",
			"check --api.data names the API's state directory")
	case tok.Problem != "":
		return res(Fail, fmt.Sprintf("%s: the token is %s", c.TokenFile, tok.Problem), "it no longer authenticates",
			"create a new one: nicompute api token create --name ops --scope admin, and write it to the file with mode 0600")
	case !tok.Admin:
		return res(Warn, fmt.Sprintf("%s: token %s (%s) has no admin scope", c.TokenFile, tok.Name, tok.ID),
			"it cannot see every tenant, allocate by hotkey, manage tokens or sign in to the dashboard",
			"use an admin token (nicompute api token create --scope admin)")
	}
	return pass(fmt.Sprintf("%s, mode %04o: admin token %s (%s) valid", c.TokenFile, f.Mode.Perm(), tok.Name, tok.ID))
}
