package subtensor

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/netip"
	"strings"

	"github.com/nicompute/nicompute/internal/keys"
	"github.com/nicompute/nicompute/internal/subnet"
)

// Mapping of the runtime's neuron structs (NeuronInfoLite from
// NeuronInfoRuntimeApi, SubnetState from SubnetInfoRuntimeApi) to
// subnet.Neuron. Fields are found by name, so additions and reordering in
// the runtime do not break decoding; a missing or mistyped field is an
// error.

// fraction reads a u16 fixed-point fraction (65535 = 1) as a number in
// [0, 1]; a larger value is malformed and fails the reader naming the field.
func (f *fieldReader) fraction(name string) float64 {
	v := f.uint(name)
	if v > math.MaxUint16 && f.err == nil {
		f.err = fmt.Errorf("field %s: fraction %d exceeds %d", name, v, math.MaxUint16)
	}
	return float64(min(v, math.MaxUint16)) / math.MaxUint16
}

// accountSS58 converts a 32-byte account id to its SS58 address.
func accountSS58(b []byte) (string, error) {
	if len(b) != keys.PublicKeyLen {
		return "", fmt.Errorf("account id of %d bytes", len(b))
	}
	return keys.SS58Encode(b), nil
}

// axonIP renders the u128 ip of an AxonInfo of ip_type 4 or 6; an
// IPv4-mapped IPv6 address is rendered as the IPv4 address it reaches. A
// zero ip is "0.0.0.0", which Bittensor treats as not serving.
func axonIP(ip *big.Int, ipType uint64) (string, error) {
	if ip.Sign() == 0 {
		return "0.0.0.0", nil
	}
	if ip.Sign() < 0 || ip.BitLen() > 128 {
		return "", fmt.Errorf("ip %s out of range", ip)
	}
	var b [16]byte
	ip.FillBytes(b[:])
	switch ipType {
	case 4:
		if ip.BitLen() > 32 {
			return "", fmt.Errorf("ip %s is not an IPv4 address", ip)
		}
		return netip.AddrFrom4([4]byte(b[12:])).String(), nil
	case 6:
		// An IPv4-mapped address (::ffff:a.b.c.d) dials the IPv4 host:
		// render it as that host, so one host has one spelling.
		return netip.AddrFrom16(b).Unmap().String(), nil
	}
	return "", fmt.Errorf("unknown ip_type %d", ipType)
}

// ipToU128 encodes an IP address as serve_axon takes it: the address bytes
// as a big-endian integer, with ip_type 4 or 6.
func ipToU128(s string) (*big.Int, uint8, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil, 0, subnet.Errorf(subnet.EINVALID, "invalid axon ip %q", s)
	}
	a = a.WithZone("")
	if a.Is4() || a.Is4In6() {
		b := a.Unmap().As4()
		return new(big.Int).SetBytes(b[:]), 4, nil
	}
	b := a.As16()
	return new(big.Int).SetBytes(b[:]), 6, nil
}

// neuronFromLite maps one decoded NeuronInfoLite of netuid.
func neuronFromLite(v any, netuid subnet.NetUID) (subnet.Neuron, error) {
	f := &fieldReader{v: v}
	var n subnet.Neuron
	hot, cold := fieldAs[[]byte](f, "hotkey"), fieldAs[[]byte](f, "coldkey")
	uid, net := f.uint("uid"), f.uint("netuid")
	n.Active = fieldAs[bool](f, "active")
	n.Axon.Block = f.uint("axon_info", "block")
	version := f.uint("axon_info", "version")
	ip := f.big("axon_info", "ip")
	port := f.uint("axon_info", "port")
	ipType := f.uint("axon_info", "ip_type")
	protocol := f.uint("axon_info", "protocol")
	prom := prometheusFields(f)
	stakes := fieldAs[[]any](f, "stake")
	n.Rank = f.fraction("rank")
	n.Emission = subnet.Balance(f.uint("emission"))
	n.Incentive = f.fraction("incentive")
	n.Consensus = f.fraction("consensus")
	n.Trust = f.fraction("trust")
	n.ValidatorTrust = f.fraction("validator_trust")
	n.Dividends = f.fraction("dividends")
	n.LastUpdate = f.uint("last_update")
	n.ValidatorPermit = fieldAs[bool](f, "validator_permit")
	if f.err != nil {
		return n, f.err
	}
	if net != uint64(netuid) {
		return n, fmt.Errorf("neuron of netuid %d in the answer for netuid %d", net, netuid)
	}
	if uid > math.MaxUint16 || port > math.MaxUint16 || version > math.MaxUint32 || ipType > math.MaxUint8 || protocol > math.MaxUint8 {
		return n, fmt.Errorf("uid %d: field out of range", uid)
	}
	n.UID = subnet.UID(uid)
	var err error
	if n.Hotkey, err = accountSS58(hot); err != nil {
		return n, fmt.Errorf("uid %d hotkey: %w", uid, err)
	}
	if n.Coldkey, err = accountSS58(cold); err != nil {
		return n, fmt.Errorf("uid %d coldkey: %w", uid, err)
	}
	if n.Axon.IP, err = axonIP(ip, ipType); err != nil {
		return n, fmt.Errorf("uid %d axon: %w", uid, err)
	}
	n.Axon.Version, n.Axon.Port = uint32(version), uint16(port)
	n.Axon.IPType, n.Axon.Protocol = uint8(ipType), uint8(protocol)
	if ipType == 6 && !strings.Contains(n.Axon.IP, ":") {
		n.Axon.IPType = 4 // an IPv4-mapped address, rendered as IPv4
	}
	if n.Prometheus, err = prom.info(); err != nil {
		return n, fmt.Errorf("uid %d prometheus: %w", uid, err)
	}
	for i, s := range stakes {
		pair, ok := s.([]any)
		if !ok || len(pair) != 2 {
			return n, fmt.Errorf("uid %d stake %d: want (account, amount)", uid, i)
		}
		amt, ok := asUint64(unwrap(pair[1]))
		if !ok || uint64(n.Stake)+amt < uint64(n.Stake) {
			return n, fmt.Errorf("uid %d stake %d: invalid amount", uid, i)
		}
		n.Stake += subnet.Balance(amt)
	}
	return n, nil
}

// subnetState is the per-uid data this package takes from SubnetState.
type subnetState struct {
	hotkeys      [][]byte
	totalStake   []uint64
	registeredAt []uint64
}

func parseSubnetState(v any, netuid subnet.NetUID) (*subnetState, error) {
	f := &fieldReader{v: v}
	net := f.uint("netuid")
	hot, stake, reg := fieldAs[[]any](f, "hotkeys"), fieldAs[[]any](f, "total_stake"), fieldAs[[]any](f, "block_at_registration")
	if f.err != nil {
		return nil, f.err
	}
	if net != uint64(netuid) {
		return nil, fmt.Errorf("state of netuid %d in the answer for netuid %d", net, netuid)
	}
	if len(stake) != len(hot) || len(reg) != len(hot) {
		return nil, fmt.Errorf("%d hotkeys, %d stakes, %d registration blocks", len(hot), len(stake), len(reg))
	}
	s := &subnetState{hotkeys: make([][]byte, len(hot)), totalStake: make([]uint64, len(hot)), registeredAt: make([]uint64, len(hot))}
	for i := range hot {
		b, ok := unwrap(hot[i]).([]byte)
		st, ok2 := asUint64(unwrap(stake[i]))
		rb, ok3 := asUint64(unwrap(reg[i]))
		if !ok || !ok2 || !ok3 {
			return nil, fmt.Errorf("uid %d: malformed entry", i)
		}
		s.hotkeys[i], s.totalStake[i], s.registeredAt[i] = b, st, rb
	}
	return s, nil
}

// mergeState sets stake (SubnetState's total stake, as the Bittensor SDK's
// metagraph reports it) and registration blocks, after checking both
// answers describe the same neurons.
func mergeState(ns []subnet.Neuron, s *subnetState) error {
	if len(s.hotkeys) != len(ns) {
		return fmt.Errorf("subnet state has %d uids, neuron list %d", len(s.hotkeys), len(ns))
	}
	for i := range ns {
		u := int(ns[i].UID)
		if u >= len(s.hotkeys) {
			return fmt.Errorf("uid %d beyond the subnet state", u)
		}
		hk, err := accountSS58(s.hotkeys[u])
		if err != nil || hk != ns[i].Hotkey {
			return fmt.Errorf("uid %d: hotkey differs between neuron list and subnet state", u)
		}
		ns[i].Stake = subnet.Balance(s.totalStake[u])
		ns[i].RegisteredAt = s.registeredAt[u]
	}
	return nil
}

// promFields are a NeuronInfoLite's prometheus_info, as decoded.
type promFields struct {
	block, version, port, ipType uint64
	ip                           *big.Int
}

func prometheusFields(f *fieldReader) promFields {
	return promFields{
		block: f.uint("prometheus_info", "block"), version: f.uint("prometheus_info", "version"),
		ip: f.big("prometheus_info", "ip"), port: f.uint("prometheus_info", "port"), ipType: f.uint("prometheus_info", "ip_type"),
	}
}

// info checks the ranges and renders the address; a neuron that never
// served keeps the zero value.
func (p promFields) info() (subnet.PrometheusInfo, error) {
	if p.port > math.MaxUint16 || p.version > math.MaxUint32 || p.ipType > math.MaxUint8 {
		return subnet.PrometheusInfo{}, errors.New("field out of range")
	}
	if p.ip == nil || (p.ip.Sign() == 0 && p.port == 0) {
		return subnet.PrometheusInfo{Block: p.block, Version: uint32(p.version)}, nil
	}
	ip, err := axonIP(p.ip, p.ipType)
	if err != nil {
		return subnet.PrometheusInfo{}, err
	}
	typ := uint8(p.ipType)
	if typ == 6 && !strings.Contains(ip, ":") {
		typ = 4
	}
	return subnet.PrometheusInfo{Block: p.block, Version: uint32(p.version), IP: ip, Port: uint16(p.port), IPType: typ}, nil
}
