package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"

	"github.com/nicompute/nicompute/internal/rental"
)

// The human forms of the rent commands' answers.

func writeOffers(w io.Writer, offers []rental.Offer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GPUS\tMODEL\tVRAM/GPU\tMINERS\tFREE CPUS\tFREE RAM\tFREE DISK\tVERIFIED")
	for _, o := range offers {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", o.GPUCount, o.GPUModel, bytesText(o.VRAM), o.Miners,
			countText(o.FreeCPUs), bytesText(o.FreeRAM), bytesText(o.FreeDisk), o.LastVerified.Format(time.RFC3339))
		if len(o.Hotkeys) > 0 {
			fmt.Fprintf(tw, "\t  hotkeys: %s\t\t\t\t\t\t\n", strings.Join(o.Hotkeys, " "))
		}
	}
	if len(offers) == 0 {
		fmt.Fprintln(tw, "-\tnothing verified matches\t\t\t\t\t\t")
	}
	return tw.Flush()
}

func bytesText(n int64) string {
	if n <= 0 {
		return "-"
	}
	return units.BytesSize(float64(n))
}

func countText(n int) string {
	if n <= 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

// loginLine is the ssh command of al, with -i when identity is known.
func loginLine(al rental.Allocation, identity string) string {
	return sshCommand(identity, al.Username, al.Host, al.Port)
}

func writeCreated(w io.Writer, al rental.Allocation, identity string, replayed bool) error {
	if replayed {
		fmt.Fprintf(w, "this request was made before: allocation %s (%s)\n", al.ID, al.State)
	} else {
		fmt.Fprintf(w, "allocated %s: %d × %s, until %s\n", al.ID, al.GPUCount, al.GPUModel, al.ExpiresAt.Format(time.RFC3339))
	}
	fmt.Fprintln(w, loginLine(al, identity))
	for _, p := range al.Ports {
		fmt.Fprintf(w, "port %d → %s:%d\n", p.Container, p.Host, p.Port)
	}
	if al.Password != "" {
		fmt.Fprintf(w, "password %s (shown once, not stored)\n", al.Password)
	}
	fmt.Fprintf(w, "nicompute rent ssh %s logs in; nicompute rent stop %s ends it\n", al.ID, al.ID)
	return nil
}

func writeAllocations(w io.Writer, list []rental.Allocation) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tGPUS\tLOGIN\tEXPIRES")
	for _, al := range list {
		login := "-"
		if al.Port > 0 {
			login = loginLine(al, "")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d × %s\t%s\t%s\n", al.ID, al.State, al.GPUCount, orDash(al.GPUModel), login, al.ExpiresAt.Format(time.RFC3339))
	}
	if len(list) == 0 {
		fmt.Fprintln(tw, "-\t-\t-\t-\t-")
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writeAllocation(w io.Writer, al rental.Allocation) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	row("id", al.ID)
	row("state", string(al.State))
	row("gpus", fmt.Sprintf("%d × %s", al.GPUCount, orDash(al.GPUModel)))
	if al.Port > 0 {
		row("login", loginLine(al, ""))
	}
	for _, p := range al.Ports {
		row("port", fmt.Sprintf("%d → %s:%d", p.Container, p.Host, p.Port))
	}
	row("image", al.Image)
	row("created", al.CreatedAt.Format(time.RFC3339))
	row("expires", al.ExpiresAt.Format(time.RFC3339))
	if al.EndedAt != nil {
		row("ended", al.EndedAt.Format(time.RFC3339)+" ("+al.EndReason+")")
	}
	if al.CheckedAt != nil {
		row("checked", al.CheckedAt.Format(time.RFC3339))
	}
	row("note", al.Note)
	row("tenant", al.Tenant)
	row("miner", al.MinerHotkey)
	return tw.Flush()
}
