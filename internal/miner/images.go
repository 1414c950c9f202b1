package miner

import (
	"slices"
	"strings"

	"github.com/nicompute/nicompute/internal/market"
)

// AnyImage in Config.Images lets renters run any image the engine can pull.
const AnyImage = "*"

// imagePolicy decides which image a lease runs. An empty base_image or
// SN27's placeholder "ubuntu" means the operator's default; any other image
// must be the default or one of the operator's extra images (or the
// operator allowed any with "*"). Keeping renters to a list stops them from
// making the miner pull arbitrary images onto its disk.
type imagePolicy struct {
	validate func(string) (string, error)
	def      string
	allowed  []string // canonical references, default first
	any      bool
}

func newImagePolicy(rt Runtime, def string, extra []string) (*imagePolicy, error) {
	p := &imagePolicy{validate: rt.ValidateImage}
	var err error
	if p.def, err = rt.ValidateImage(def); err != nil {
		return nil, err
	}
	p.allowed = []string{p.def}
	for _, img := range extra {
		img = strings.TrimSpace(img)
		if img == AnyImage {
			p.any = true
			continue
		}
		c, err := rt.ValidateImage(img)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(p.allowed, c) {
			p.allowed = append(p.allowed, c)
		}
	}
	return p, nil
}

// resolve returns the image for a requested base_image. Errors: EINVALID.
func (p *imagePolicy) resolve(requested string) (string, error) {
	requested = strings.TrimSpace(requested)
	if requested == "" || requested == placeholderImage {
		return p.def, nil
	}
	img, err := p.validate(requested)
	if err != nil {
		return "", err
	}
	if p.any || slices.Contains(p.allowed, img) {
		return img, nil
	}
	return "", market.Errorf(market.EINVALID, "image %s is not offered by this miner; it offers %s", img, strings.Join(p.allowed, ", "))
}
