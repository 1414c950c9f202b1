package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/chain/local"
	"github.com/nicompute/nicompute/internal/subnet"
)

// chainFlags are the flags of every command that talks to a chain.
type chainFlags struct {
	w      walletFlags
	sf     subtensorFlags
	asJSON bool
}

func (f *chainFlags) register(cmd *cobra.Command, jsonHelp string) {
	f.w.register(cmd.Flags())
	f.sf.register(cmd.Flags())
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print one JSON object: "+jsonHelp)
}

func netuidFlag(cmd *cobra.Command, dst *uint16) {
	cmd.Flags().Uint16Var(dst, "netuid", 0, "subnet id")
	_ = cmd.MarkFlagRequired("netuid")
}

func newSubnetCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "subnet",
		Short: "Create, register on and inspect subnets",
	}
	cmd.AddCommand(
		newSubnetCreateCmd(a),
		newSubnetRegisterCmd(a),
		newSubnetMetagraphCmd(a),
		newSubnetHyperparametersCmd(a),
		newSubnetListCmd(a),
	)
	return cmd
}

func newSubnetCreateCmd(a *app) *cobra.Command {
	var f chainFlags
	var tempo uint16
	var commitReveal bool
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a subnet owned by the wallet's coldkey (embedded chain only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			ch, err := a.dialLocalOnly(ctx, f.sf, "subnet create")
			if err != nil {
				return err
			}
			defer ch.Close()
			coldkey, err := a.loadColdkey(f.w)
			if err != nil {
				return err
			}
			netuid, err := ch.CreateSubnetWith(ctx, coldkey, local.SubnetOptions{Tempo: tempo, PlainWeights: !commitReveal})
			if err != nil {
				return chainErr("create subnet: %w", err)
			}
			if f.asJSON {
				return a.printJSON(map[string]any{"netuid": netuid})
			}
			fmt.Fprintf(a.Out, "created subnet %d owned by %s\n", netuid, coldkey.SS58())
			return nil
		},
	}
	f.register(cmd, `{"netuid": N}`)
	cmd.Flags().Uint16Var(&tempo, "tempo", 0, "blocks between epochs (0: the chain's default)")
	cmd.Flags().BoolVar(&commitReveal, "commit-reveal", true, "commit-reveal weights: validators commit timelocked weights that the chain reveals one epoch later, as on Bittensor (false: weights are set in the clear)")
	return cmd
}

func newSubnetRegisterCmd(a *app) *cobra.Command {
	var f chainFlags
	var netuid uint16
	cmd := &cobra.Command{
		Use:   "register",
		Short: "Register the wallet's hotkey on a subnet, the coldkey paying the burn",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			coldkey, err := a.loadColdkey(f.w)
			if err != nil {
				return err
			}
			hotkey, err := a.loadHotkey(f.w)
			if err != nil {
				return err
			}
			ch, err := a.dialChain(ctx, f.sf)
			if err != nil {
				return err
			}
			defer ch.Close()
			burn, err := ch.BurnCost(ctx, subnet.NetUID(netuid))
			if err != nil {
				return chainErr("register on subnet %d: %w", netuid, err)
			}
			uid, err := ch.BurnedRegister(ctx, coldkey, subnet.NetUID(netuid), hotkey.SS58())
			already := subnet.ErrorCode(err) == subnet.EALREADY
			if err != nil && !already {
				return chainErr("register hotkey %s on subnet %d: %w", hotkey.SS58(), netuid, err)
			}
			if f.asJSON {
				out := map[string]any{"uid": uid}
				if already {
					out["already_registered"] = true
				}
				return a.printJSON(out)
			}
			if already {
				fmt.Fprintf(a.Out, "hotkey %s is already registered on subnet %d as uid %d\n", hotkey.SS58(), netuid, uid)
				return nil
			}
			fmt.Fprintf(a.Out, "registered hotkey %s on subnet %d as uid %d (burned %s)\n", hotkey.SS58(), netuid, uid, burn)
			return nil
		},
	}
	f.register(cmd, `{"uid": U}`)
	netuidFlag(cmd, &netuid)
	return cmd
}

// metagraphJSON is the --json shape of subnet metagraph: amounts in TAO.
type metagraphJSON struct {
	NetUID  subnet.NetUID `json:"netuid"`
	Block   uint64        `json:"block"`
	Neurons []neuronJSON  `json:"neurons"`
}

type neuronJSON struct {
	UID             subnet.UID `json:"uid"`
	Hotkey          string     `json:"hotkey"`
	Coldkey         string     `json:"coldkey"`
	Stake           float64    `json:"stake"`
	Axon            axonJSON   `json:"axon"`
	ValidatorPermit bool       `json:"validator_permit"`
	Incentive       float64    `json:"incentive"`
	Dividends       float64    `json:"dividends"`
	Emission        float64    `json:"emission"`
	LastUpdate      uint64     `json:"last_update"`
}

type axonJSON struct {
	IP      string `json:"ip"`
	Port    uint16 `json:"port"`
	Version uint32 `json:"version"`
}

func newSubnetMetagraphCmd(a *app) *cobra.Command {
	var f chainFlags
	var netuid uint16
	cmd := &cobra.Command{
		Use:   "metagraph",
		Short: "Show a subnet's neurons",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			ch, err := a.dialChain(ctx, f.sf)
			if err != nil {
				return err
			}
			defer ch.Close()
			m, err := ch.Metagraph(ctx, subnet.NetUID(netuid))
			if err != nil {
				return chainErr("metagraph of subnet %d: %w", netuid, err)
			}
			if f.asJSON {
				out := metagraphJSON{NetUID: m.NetUID, Block: m.Block, Neurons: make([]neuronJSON, len(m.Neurons))}
				for i, n := range m.Neurons {
					out.Neurons[i] = neuronJSON{
						UID: n.UID, Hotkey: n.Hotkey, Coldkey: n.Coldkey, Stake: n.Stake.TAO(),
						Axon:            axonJSON{IP: n.Axon.IP, Port: n.Axon.Port, Version: n.Axon.Version},
						ValidatorPermit: n.ValidatorPermit, Incentive: n.Incentive, Dividends: n.Dividends,
						Emission: n.Emission.TAO(), LastUpdate: n.LastUpdate,
					}
				}
				return a.printJSON(out)
			}
			return printMetagraph(a.Out, m)
		},
	}
	f.register(cmd, `{"netuid", "block", "neurons": [{"uid", "hotkey", "coldkey", "stake", "axon", "validator_permit", "incentive", "dividends", "emission", "last_update"}]}`)
	netuidFlag(cmd, &netuid)
	return cmd
}

// printMetagraph writes m as a table.
func printMetagraph(w io.Writer, m *subnet.Metagraph) error {
	fmt.Fprintf(w, "subnet %d at block %d: %d neurons\n", m.NetUID, m.Block, len(m.Neurons))
	if len(m.Neurons) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UID\tHOTKEY\tCOLDKEY\tSTAKE τ\tVPERMIT\tINCENTIVE\tDIVIDENDS\tEMISSION τ\tUPDATED\tAXON")
	for _, n := range m.Neurons {
		axon := "-"
		if n.Axon.Served() {
			axon = n.Axon.Addr()
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%.4f\t%s\t%.4f\t%.4f\t%.4f\t%d\t%s\n", n.UID, short(n.Hotkey), short(n.Coldkey),
			n.Stake.TAO(), yesNo(n.ValidatorPermit), n.Incentive, n.Dividends, n.Emission.TAO(), n.LastUpdate, axon)
	}
	return tw.Flush()
}

// short abbreviates an SS58 address for tables.
func short(addr string) string {
	if len(addr) <= 12 {
		return addr
	}
	return addr[:6] + "…" + addr[len(addr)-4:]
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func newSubnetHyperparametersCmd(a *app) *cobra.Command {
	var f chainFlags
	var netuid uint16
	cmd := &cobra.Command{
		Use:   "hyperparameters",
		Short: "Show a subnet's parameters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			ch, err := a.dialChain(ctx, f.sf)
			if err != nil {
				return err
			}
			defer ch.Close()
			h, err := ch.Hyperparameters(ctx, subnet.NetUID(netuid))
			if err != nil {
				return chainErr("hyperparameters of subnet %d: %w", netuid, err)
			}
			if f.asJSON {
				return a.printJSON(h)
			}
			tw := tabwriter.NewWriter(a.Out, 0, 4, 2, ' ', 0)
			for _, row := range [][2]string{
				{"tempo", strconv.Itoa(int(h.Tempo))},
				{"weights_rate_limit", strconv.FormatUint(h.WeightsRateLimit, 10)},
				{"weights_version", strconv.FormatUint(h.WeightsVersionKey, 10)},
				{"immunity_period", strconv.FormatUint(h.ImmunityPeriod, 10)},
				{"min_allowed_weights", strconv.Itoa(int(h.MinAllowedWeights))},
				{"max_weights_limit", strconv.Itoa(int(h.MaxWeightLimit))},
				{"max_allowed_uids", strconv.Itoa(int(h.MaxAllowedUIDs))},
				{"max_allowed_validators", strconv.Itoa(int(h.MaxAllowedValidators))},
				{"activity_cutoff", strconv.FormatUint(h.ActivityCutoff, 10)},
				{"kappa", strconv.Itoa(int(h.Kappa))},
				{"bonds_moving_avg", strconv.FormatUint(h.BondsMovingAverage, 10)},
				{"serving_rate_limit", strconv.FormatUint(h.ServingRateLimit, 10)},
				{"burn", h.Burn.String()},
				{"commit_reveal_weights_enabled", strconv.FormatBool(h.CommitRevealEnabled)},
				{"commit_reveal_period", strconv.FormatUint(h.RevealPeriodEpochs, 10)},
				{"registration_allowed", strconv.FormatBool(h.RegistrationAllowed)},
			} {
				fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
			}
			return tw.Flush()
		},
	}
	f.register(cmd, "the hyperparameters by name")
	netuidFlag(cmd, &netuid)
	return cmd
}

func newSubnetListCmd(a *app) *cobra.Command {
	var f chainFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the subnets (embedded chain only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			ch, err := a.dialLocalOnly(ctx, f.sf, "subnet list")
			if err != nil {
				return err
			}
			defer ch.Close()
			list, err := ch.Subnets(ctx)
			if err != nil {
				return chainErr("list subnets: %w", err)
			}
			if f.asJSON {
				type item struct {
					NetUID    subnet.NetUID `json:"netuid"`
					Owner     string        `json:"owner"`
					Tempo     uint16        `json:"tempo"`
					N         uint16        `json:"n"`
					MaxUIDs   uint16        `json:"max_uids"`
					Burn      float64       `json:"burn"`
					LastEpoch uint64        `json:"last_epoch"`
				}
				out := make([]item, len(list))
				for i, s := range list {
					out[i] = item{s.NetUID, s.Owner, s.Tempo, s.N, s.MaxUIDs, s.Burn.TAO(), s.LastEpoch}
				}
				return a.printJSON(map[string]any{"subnets": out})
			}
			tw := tabwriter.NewWriter(a.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NETUID\tOWNER\tTEMPO\tUIDS\tBURN τ\tLAST EPOCH")
			for _, s := range list {
				fmt.Fprintf(tw, "%d\t%s\t%d\t%d/%d\t%s\t%d\n", s.NetUID, short(s.Owner), s.Tempo, s.N, s.MaxUIDs, strconv.FormatFloat(s.Burn.TAO(), 'f', -1, 64), s.LastEpoch)
			}
			return tw.Flush()
		},
	}
	f.register(cmd, `{"subnets": [{"netuid", "owner", "tempo", "n", "max_uids", "burn", "last_epoch"}]}`)
	return cmd
}
