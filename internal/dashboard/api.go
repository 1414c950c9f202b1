package dashboard

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"
)

// APIData is what the allocation API's page shows: the subnet and its
// miners as the validator's results show them and, to a signed-in
// operator only, the allocations and their health.
type APIData struct {
	NetUID  uint16
	Block   uint64
	Tempo   uint16 // 0: unknown
	ChainOK bool
	// UID, Hotkey, Registered and Permit describe the validator whose
	// hotkey the API signs with.
	UID        uint16
	Hotkey     string
	Registered bool
	Permit     bool
	// LastSweep and LastWeights are the blocks of the validator's last
	// Proof-of-GPU sweep and scored weights submission (0: none recorded);
	// PendingCommits its weights commits not revealed yet.
	LastSweep      uint64
	LastWeights    uint64
	PendingCommits int
	// Offered is how many verified miners the API offers.
	Offered    int
	Miners     []MinerRow
	Scores     []ScorePoint
	Incentives []Sample
	Results    []ResultPoint
	// Admin is set by the page for a signed-in operator; Allocations are
	// shown only then.
	Admin       bool
	Allocations []AllocationRow
}

// AllocationRow is one allocation of the operator's table. It holds no
// secret: no key, password, token or webhook secret.
type AllocationRow struct {
	ID, Tenant, State string
	EndReason         string
	GPUModel          string
	GPUCount          int
	Miner             string // hotkey
	MinerUID          int
	Host              string
	Port              int
	Created, Expires  time.Time
	// Checked is the last health check, Ended the end (zero: none).
	Checked, Ended time.Time
	Note           string
}

// Sessions signs operators in with an admin token; *rental.Tokens
// implements it.
type Sessions interface {
	// SignIn exchanges an admin token for a session secret and its
	// expiry; any error refuses the sign-in.
	SignIn(ctx context.Context, token string) (string, time.Time, error)
	// SignedIn reports whether secret is a live session; an error means
	// it could not be checked.
	SignedIn(ctx context.Context, secret string) (bool, error)
	// SignOut ends the session.
	SignOut(ctx context.Context, secret string) error
}

// SessionCookie names the cookie holding a dashboard session.
const SessionCookie = "nicompute_session"

// maxFormBytes bounds a sign-in form.
const maxFormBytes = 4 << 10

// refusedSignIn is what a refused sign-in is told; the reason goes to the
// log only.
const refusedSignIn = "This token cannot sign in: it is unknown, revoked or expired, or it has no admin scope."

// apiPage serves the API's page, its assets and the sign-in flow.
type apiPage struct {
	opt      Options
	data     func(ctx context.Context, admin bool) (*APIData, error)
	sessions Sessions
	login    *template.Template
}

// NewAPI returns the allocation API's dashboard, to be served at
// opt.Base and everything below it: the page (opt.Base), its assets, and
// the sign-in form (opt.Base + "login", GET and POST) and sign-out
// (opt.Base + "logout", POST). data is called for every page view; admin
// tells it whether the request is signed in. A signed-in browser holds
// only a session secret in an HttpOnly, SameSite=Strict cookie (Secure
// when the request came over TLS) scoped to opt.Base; the token itself
// is posted once in a form body, never put in a URL. Posts from another
// origin are refused (http.CrossOriginProtection), and the pages run no
// script.
func NewAPI(data func(ctx context.Context, admin bool) (*APIData, error), sessions Sessions, opt Options) http.Handler {
	opt.setDefaults()
	p := &apiPage{opt: opt, data: data, sessions: sessions, login: parse("login.html")}
	page := &handler{opt: opt, tmpl: parse("api.html"), forms: true, build: p.build}
	mux := http.NewServeMux()
	Mount(mux, opt.Base, page)
	cop := http.NewCrossOriginProtection()
	mux.HandleFunc("GET "+opt.Base+"login", func(w http.ResponseWriter, _ *http.Request) {
		p.loginPage(w, http.StatusOK, "")
	})
	mux.Handle("POST "+opt.Base+"login", cop.Handler(http.HandlerFunc(p.signIn)))
	mux.Handle("POST "+opt.Base+"logout", cop.Handler(http.HandlerFunc(p.signOut)))
	return mux
}

func (p *apiPage) build(r *http.Request) (page, error) {
	admin := p.signedIn(r)
	d, err := p.data(r.Context(), admin)
	if err != nil {
		return page{}, err
	}
	d.Admin = admin
	if !admin {
		d.Allocations = nil // never shown to anyone else, whatever data returned
	}
	sub := fmt.Sprintf("block %d · %d verified miners offered", d.Block, d.Offered)
	if admin {
		sub += " · signed in"
	}
	return page{
		Title:    fmt.Sprintf("nicompute allocation API · subnet %d", d.NetUID),
		Subtitle: sub,
		Data:     d,
		Charts:   subnetCharts(d.Scores, d.Incentives, d.Results),
	}, nil
}

// signedIn reports whether r carries a live session. A session that could
// not be checked reads as signed out for this request.
func (p *apiPage) signedIn(r *http.Request) bool {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return false
	}
	ok, err := p.sessions.SignedIn(r.Context(), c.Value)
	if err != nil {
		p.opt.Log.Warn("dashboard: check a session", "err", err)
		return false
	}
	return ok
}

// loginPage writes the sign-in form with refusal, if any.
func (p *apiPage) loginPage(w http.ResponseWriter, status int, refusal string) {
	setHeaders(w, true)
	writePage(w, status, p.login, page{Title: "nicompute allocation API · sign in", Data: struct{ Error string }{refusal}}, p.opt)
}

func (p *apiPage) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		p.loginPage(w, http.StatusBadRequest, "The form could not be read; sign in again.")
		return
	}
	secret, expires, err := p.sessions.SignIn(r.Context(), r.PostForm.Get("token"))
	if err != nil {
		p.opt.Log.Info("dashboard sign-in refused", "err", err)
		p.loginPage(w, http.StatusUnauthorized, refusedSignIn)
		return
	}
	http.SetCookie(w, p.cookie(r, secret, expires))
	p.opt.Log.Info("dashboard signed in", "until", expires.Format(time.RFC3339))
	http.Redirect(w, r, p.opt.Base, http.StatusSeeOther)
}

func (p *apiPage) signOut(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
		if err := p.sessions.SignOut(r.Context(), c.Value); err != nil {
			p.opt.Log.Warn("dashboard: sign out", "err", err)
			http.Error(w, "the session could not be ended; see the daemon's log", http.StatusServiceUnavailable)
			return
		}
	}
	http.SetCookie(w, p.cookie(r, "", time.Time{}))
	http.Redirect(w, r, p.opt.Base, http.StatusSeeOther)
}

// cookie is the session cookie holding secret until expires, or, for an
// empty secret, the one that deletes it.
func (p *apiPage) cookie(r *http.Request, secret string, expires time.Time) *http.Cookie {
	c := &http.Cookie{
		Name: SessionCookie, Value: secret, Path: p.opt.Base,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	}
	if secret == "" {
		c.MaxAge = -1
		return c
	}
	c.Expires = expires
	c.MaxAge = max(int(time.Until(expires)/time.Second), 1)
	return c
}

// stateClass colours an allocation's state.
func stateClass(s string) string {
	switch strings.ToLower(s) {
	case "online":
		return "ok"
	case "offline", "ending":
		return "bad"
	}
	return "warn"
}
