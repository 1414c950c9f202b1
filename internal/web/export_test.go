package web

import (
	"net/http"

	"github.com/go-chi/chi/v5"
)

// RouteList lists the routes s's router serves, as "METHOD /pattern".
func RouteList(s *Server) []string {
	var out []string
	_ = chi.Walk(s.mux, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		out = append(out, method+" "+route)
		return nil
	})
	return out
}
