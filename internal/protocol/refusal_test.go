package protocol

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/nicompute/nicompute/internal/market"
)

func TestRefusal(t *testing.T) {
	for _, tc := range []struct {
		name     string
		out      Output
		wantCode string
		wantMsg  string
	}{
		{"success", Output{Status: true}, "", ""},
		{"success with a stray code", Output{Status: true, Code: market.ECONFLICT}, "", ""},
		{"plain no of a check", Output{Error: "not enough free gpus"}, "", ""},
		{"refusal", Output{Error: "image x is not offered", Code: market.EINVALID}, market.EINVALID, "image x is not offered"},
		{"refusal without a reason", Output{Code: market.ENOTFOUND}, market.ENOTFOUND, "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.out.Refusal()
			if market.ErrorCode(err) != tc.wantCode || (err != nil && err.Error() != tc.wantMsg) {
				t.Fatalf("Refusal() = %v (code %q), want code %q message %q", err, market.ErrorCode(err), tc.wantCode, tc.wantMsg)
			}
		})
	}
}

func TestRefuse(t *testing.T) {
	out := Refuse(fmt.Errorf("reserve: %w", market.Errorf(market.ECONFLICT, "no free ssh port")))
	if out.Status || out.Code != market.ECONFLICT || out.Error != "no free ssh port" {
		t.Fatalf("Refuse(conflict) = %+v", out)
	}
	// An unclassified error's detail stays in the log.
	out = Refuse(errors.New("open /var/lib/x: permission denied"))
	if out.Code != market.EINTERNAL || out.Error != "internal error" {
		t.Fatalf("Refuse(internal) = %+v", out)
	}
	if err := out.Refusal(); market.ErrorCode(err) != market.EINTERNAL {
		t.Fatalf("round trip: %v", err)
	}
}

func TestRefusalStatus(t *testing.T) {
	for code, want := range map[string]int{
		market.EINVALID: http.StatusBadRequest, market.EUNAUTHORIZED: http.StatusUnauthorized,
		market.EFORBIDDEN: http.StatusForbidden, market.ENOTFOUND: http.StatusNotFound,
		market.ECONFLICT: http.StatusConflict, market.EUNAVAILABLE: http.StatusServiceUnavailable,
		market.EINTERNAL: http.StatusInternalServerError, "something new": http.StatusInternalServerError,
	} {
		if got := RefusalStatus(code); got != want {
			t.Errorf("RefusalStatus(%q) = %d, want %d", code, got, want)
		}
	}
}
