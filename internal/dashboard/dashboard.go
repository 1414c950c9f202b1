// Package dashboard renders the operators' pages: the validator's (its
// subnet, every miner with its verified GPUs, score, last Proof-of-GPU and
// reason, charts of scores, incentives and Proof-of-GPU results over time),
// the miner's (its standing, capacity, leases, the last answers it gave
// validators, incentive and emission over time) and the allocation API's
// (the subnet and miners as the validator's results show them and, for an
// operator signed in with an admin token, the allocations and their
// health; api.go says how signing in works).
//
// Pages are server-rendered with html/template; charts are SVG drawn by
// github.com/go-analyze/charts and inlined, and the stylesheet and icon
// are embedded, so a page needs nothing from the network and works
// offline. Pages refresh themselves and run no script; a strict Content
// Security Policy says so. Handlers take a function that returns the data
// and mount on any mux under any prefix, so the validator, the miner and
// the allocation API can each serve them.
package dashboard

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nicompute/nicompute/internal/version"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Options configure a page handler.
type Options struct {
	// Base is the path the dashboard is mounted under ("/" or "/dashboard/");
	// assets are linked from Base + "assets/".
	Base string
	// MetricsURL, when set, is linked from the footer.
	MetricsURL string
	// Refresh is the page's refresh period (default 30 s).
	Refresh time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Log receives rendering failures; nil discards.
	Log *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Base == "" {
		o.Base = "/"
	}
	if !strings.HasSuffix(o.Base, "/") {
		o.Base += "/"
	}
	if o.Refresh <= 0 {
		o.Refresh = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// page is what the layout template renders.
type page struct {
	Title, Subtitle string
	Base            string
	MetricsURL      string
	Refresh         int
	Version         string
	Now             time.Time
	Data            any
	Charts          []Chart
}

var funcs = template.FuncMap{
	"short":      short,
	"bytes":      humanBytes,
	"join":       strings.Join,
	"stateClass": stateClass,
	"outcomeClass": func(o string) string {
		switch o {
		case "pass":
			return "ok"
		case "fail":
			return "bad"
		}
		return "warn"
	},
}

func parse(content string) *template.Template {
	return template.Must(template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+content))
}

// handler serves one page built by build.
type handler struct {
	opt   Options
	tmpl  *template.Template
	build func(r *http.Request) (page, error)
	// forms: the page posts forms to its own origin (sign-in, sign-out).
	forms bool
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setHeaders(w, h.forms)
	p, err := h.build(r)
	if err != nil {
		h.opt.Log.Warn("dashboard: read state", "err", err)
		http.Error(w, "the dashboard's data is unavailable right now; see the daemon's log", http.StatusServiceUnavailable)
		return
	}
	p.Refresh = int(h.opt.Refresh / time.Second)
	writePage(w, http.StatusOK, h.tmpl, p, h.opt)
}

// writePage writes p, set up with opt, as a page of status.
func writePage(w http.ResponseWriter, status int, t *template.Template, p page, opt Options) {
	p.Base, p.MetricsURL = opt.Base, opt.MetricsURL
	p.Version, p.Now = version.Get().String(), opt.Now()
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", p); err != nil {
		opt.Log.Error("dashboard: render", "err", err)
		http.Error(w, "the dashboard failed to render; see the daemon's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// setHeaders forbids scripts, frames and every origin but this one; forms
// may post to this origin only when the page has some.
func setHeaders(w http.ResponseWriter, forms bool) {
	action := "'none'"
	if forms {
		action = "'self'"
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action "+action+"; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// Assets serves the embedded stylesheet and icon; mount it at
// Base + "assets/" with the prefix stripped to "assets/…".
func Assets() http.Handler {
	sub, err := fs.Sub(assetFS, ".")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "max-age=3600")
		files.ServeHTTP(w, r)
	})
}

// Mount registers page at opt.Base and the assets below it on mux.
func Mount(mux *http.ServeMux, base string, page http.Handler) {
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	mux.Handle("GET "+base+"{$}", page)
	mux.Handle("GET "+base+"assets/", http.StripPrefix(strings.TrimSuffix(base, "/"), Assets()))
	if base != "/" {
		mux.Handle("GET "+strings.TrimSuffix(base, "/"), http.RedirectHandler(base, http.StatusMovedPermanently))
	}
}

// short abbreviates an SS58 address to its first 6 and last 4 characters.
func short(s string) string {
	if len(s) <= 12 {
		return s
	}
	return s[:6] + "…" + s[len(s)-4:]
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
