package dashboard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAPISignIn posts arbitrary sign-in forms and presents arbitrary
// cookies: no input crashes the page or gets a server error, a session is
// set only for the good token, and allocations are shown only to a live
// session.
func FuzzAPISignIn(f *testing.F) {
	f.Add([]byte("token=good"), "application/x-www-form-urlencoded", "nicompute_session=nics_sessionb")
	f.Add([]byte("token=nic_x&token=good"), "application/x-www-form-urlencoded", "nicompute_session=")
	f.Add([]byte("token=%zz"), "application/x-www-form-urlencoded", "nicompute_session=\"nics\"; nicompute_session=nics_sessionb")
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\ngood\r\n--b--"), "multipart/form-data; boundary=b", "a=b")
	f.Add([]byte(strings.Repeat("a", 5000)), "text/plain", strings.Repeat("nicompute_session=x;", 50))
	f.Fuzz(func(t *testing.T, body []byte, contentType, cookie string) {
		sess := &fakeSessions{live: map[string]bool{"nics_live": true}}
		h := NewAPI(func(context.Context, bool) (*APIData, error) { return sampleAPI(), nil }, sess, Options{Base: "/dashboard/"})

		req := httptest.NewRequest(http.MethodPost, "/dashboard/login", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusSeeOther:
			if len(rec.Result().Cookies()) != 1 || sess.n != 1 {
				t.Fatalf("signed in without a session: %v", rec.Result().Cookies())
			}
		case http.StatusUnauthorized, http.StatusBadRequest:
			if len(rec.Result().Cookies()) != 0 {
				t.Fatalf("%d with a cookie", rec.Code)
			}
		default:
			t.Fatalf("sign-in answered %d", rec.Code)
		}

		req = httptest.NewRequest(http.MethodGet, "/dashboard/", nil)
		req.Header.Set("Cookie", cookie)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("page answered %d", rec.Code)
		}
		live := false
		for _, c := range req.Cookies() {
			if c.Name == SessionCookie {
				live = sess.live[c.Value]
				break
			}
		}
		if shown := strings.Contains(rec.Body.String(), `id="allocations"`); shown != live {
			t.Fatalf("allocations shown = %v for cookie %q", shown, cookie)
		}
	})
}
