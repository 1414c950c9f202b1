package validator

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/nicompute/nicompute/internal/subnet"
)

// queryRules decide which neurons are tested.
type queryRules struct {
	self              subnet.UID
	blacklistHotkeys  map[string]bool
	blacklistColdkeys map[string]bool
	minVersion        uint32
	updatedThreshold  int
}

func (s *Service) rules(self subnet.UID) queryRules {
	r := queryRules{
		self:              self,
		blacklistHotkeys:  map[string]bool{},
		blacklistColdkeys: map[string]bool{},
		minVersion:        s.cfg.MinMinerVersion,
		updatedThreshold:  s.cfg.UpdatedThreshold,
	}
	for _, h := range s.cfg.BlacklistHotkeys {
		r.blacklistHotkeys[h] = true
	}
	for _, c := range s.cfg.BlacklistColdkeys {
		r.blacklistColdkeys[c] = true
	}
	return r
}

// queryable returns the neurons to test, by uid, and why each other neuron
// (but the validator itself) is not tested.
//
// One uid per IP: of the neurons serving on one IP, the one registered
// earliest keeps it (ties: the lower uid). Addresses are compared as the
// host they reach, so ::ffff:a.b.c.d is a.b.c.d. Uids are reused after pruning,
// so a low uid says nothing about who was there first, and an incumbent
// cannot be displaced by a newcomer registering on its address.
//
// Versions: when more than updatedThreshold percent of the remaining miners
// serve minVersion or later, the older ones are skipped; below that share
// everyone is tested, so a release does not empty the subnet before miners
// had time to update.
func queryable(mg *subnet.Metagraph, r queryRules) ([]subnet.Neuron, map[string]string) {
	skipped := map[string]string{}
	var cands []subnet.Neuron
	for _, n := range mg.Neurons {
		switch {
		case n.UID == r.self:
		case !n.Axon.Served() || unspecified(n.Axon.IP):
			skipped[n.Hotkey] = "axon not served"
		case r.blacklistHotkeys[n.Hotkey]:
			skipped[n.Hotkey] = "hotkey blacklisted"
		case r.blacklistColdkeys[n.Coldkey]:
			skipped[n.Hotkey] = "coldkey blacklisted"
		default:
			cands = append(cands, n)
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.RegisteredAt != b.RegisteredAt {
			return a.RegisteredAt < b.RegisteredAt
		}
		return a.UID < b.UID
	})
	owner := map[string]subnet.UID{}
	var unique []subnet.Neuron
	for _, n := range cands {
		ip := hostKey(n.Axon.IP)
		if uid, taken := owner[ip]; taken {
			skipped[n.Hotkey] = fmt.Sprintf("shares IP %s with uid %d, registered earlier", ip, uid)
			continue
		}
		owner[ip] = n.UID
		unique = append(unique, n)
	}
	if r.minVersion > 0 && len(unique) > 0 {
		updated := 0
		for _, n := range unique {
			if n.Axon.Version >= r.minVersion {
				updated++
			}
		}
		if 100*updated > r.updatedThreshold*len(unique) {
			kept := unique[:0]
			for _, n := range unique {
				if n.Axon.Version >= r.minVersion {
					kept = append(kept, n)
					continue
				}
				skipped[n.Hotkey] = fmt.Sprintf("axon version %d below %d", n.Axon.Version, r.minVersion)
			}
			unique = kept
		}
	}
	sort.Slice(unique, func(i, j int) bool { return unique[i].UID < unique[j].UID })
	return unique, skipped
}

// hostKey is the address an axon IP reaches, for the one-uid-per-IP rule:
// the canonical form of the address, an IPv4-mapped IPv6 address
// (::ffff:a.b.c.d) as the IPv4 address it dials, and without a zone.
// Anything that does not parse is kept as it is.
func hostKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	return a.WithZone("").Unmap().String()
}

// unspecified reports whether ip is an unspecified address in any form
// (0.0.0.0, ::, ::ffff:0.0.0.0): no axon serves there.
func unspecified(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.Unmap().IsUnspecified()
}
