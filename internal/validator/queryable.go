package validator

import (
	"fmt"
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
// earliest keeps it (ties: the lower uid). Uids are reused after pruning,
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
		case !n.Axon.Served():
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
		if uid, taken := owner[n.Axon.IP]; taken {
			skipped[n.Hotkey] = fmt.Sprintf("shares IP %s with uid %d, registered earlier", n.Axon.IP, uid)
			continue
		}
		owner[n.Axon.IP] = n.UID
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
