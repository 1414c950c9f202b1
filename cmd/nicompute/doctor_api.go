package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nicompute/nicompute/internal/doctor"
	"github.com/nicompute/nicompute/internal/market"
	"github.com/nicompute/nicompute/internal/rental"
	"github.com/nicompute/nicompute/internal/sqlite"
)

// apiDoctorFiles are the files of an allocation API that doctor inspects:
// its state and the validator's (directories), its TLS pair and an admin
// token file. It opens the stores read-only: doctor changes nothing.
type apiDoctorFiles struct {
	data, validator string
	cert, key       string
	tokenFile       string
}

func (p *doctorProbes) ValidatorResults(ctx context.Context) (doctor.ValidatorResults, error) {
	path := filepath.Join(p.api.validator, "validator.db")
	out := doctor.ValidatorResults{Path: path}
	db, err := sqlite.OpenReadOnly(ctx, path)
	if errors.Is(err, fs.ErrNotExist) {
		return out, fmt.Errorf("no validator.db in %s", p.api.validator)
	}
	if err != nil {
		return out, err
	}
	defer db.Close()
	results, err := sqlite.NewValidatorStore(db).Results(ctx, 1)
	if err != nil {
		return out, err
	}
	for _, hist := range results {
		if len(hist) == 0 {
			continue
		}
		out.Miners++
		if hist[0].At.After(out.Newest) {
			out.Newest = hist[0].At
		}
	}
	return out, nil
}

func (p *doctorProbes) Certificate(context.Context) (doctor.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(p.api.cert, p.api.key)
	if err != nil {
		return doctor.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return doctor.Certificate{}, err
	}
	c := doctor.Certificate{NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, Names: leaf.DNSNames}
	for _, ip := range leaf.IPAddresses {
		c.Names = append(c.Names, ip.String())
	}
	if len(c.Names) == 0 {
		c.Names = []string{leaf.Subject.CommonName}
	}
	return c, nil
}

func (p *doctorProbes) File(path string) (doctor.File, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return doctor.File{}, nil
	}
	if err != nil {
		return doctor.File{}, err
	}
	return doctor.File{Exists: true, Mode: st.Mode()}, nil
}

func (p *doctorProbes) Token(ctx context.Context) (doctor.Token, error) {
	b, err := os.ReadFile(p.api.tokenFile)
	if err != nil {
		return doctor.Token{}, err
	}
	path := filepath.Join(p.api.data, "api.db")
	db, err := sqlite.OpenReadOnly(ctx, path)
	if errors.Is(err, fs.ErrNotExist) {
		return doctor.Token{}, fmt.Errorf("no api.db in %s", p.api.data)
	}
	if err != nil {
		return doctor.Token{}, err
	}
	defer db.Close()
	tok, err := rental.NewTokens(sqlite.NewRentalStore(db), nil).Authenticate(ctx, strings.TrimSpace(string(b)))
	if market.ErrorCode(err) == market.EUNAUTHORIZED {
		var re *rental.Error
		problem := "unknown"
		if errors.As(err, &re) {
			problem = map[string]string{"token_revoked": "revoked", "token_expired": "expired"}[re.Code]
			if problem == "" {
				problem = "unknown"
			}
		}
		return doctor.Token{Problem: problem}, nil
	}
	if err != nil {
		return doctor.Token{}, err
	}
	return doctor.Token{ID: tok.ID, Name: tok.Name, Admin: tok.Admin()}, nil
}
