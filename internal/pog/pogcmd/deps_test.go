package pogcmd

import (
	"os/exec"
	"strings"
	"testing"
)

// goListDeps returns the packages pkg depends on, itself included.
func goListDeps(t *testing.T, pkg string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go command")
	}
	out, err := exec.Command(goBin, "list", "-e", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// nicompute is bind-mounted as sshd into arbitrary images, so it must stay
// static: nothing that loads C libraries (purego, the CUDA backend) may be
// linked into it. nicompute-pog is where the CUDA backend goes.
func TestNicomputeHasNoDynamicLoader(t *testing.T) {
	forbidden := []string{"github.com/ebitengine/purego", "github.com/nicompute/nicompute/internal/pog/cuda"}
	for _, pkg := range []string{"github.com/nicompute/nicompute/cmd/nicompute", "github.com/nicompute/nicompute/internal/pog/pogcmd"} {
		for _, dep := range goListDeps(t, pkg) {
			for _, f := range forbidden {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
	found := false
	for _, dep := range goListDeps(t, "github.com/nicompute/nicompute/cmd/nicompute-pog") {
		found = found || dep == "github.com/nicompute/nicompute/internal/pog/cuda"
	}
	if !found {
		t.Error("nicompute-pog does not include the CUDA backend")
	}
}
