package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nicompute/nicompute/internal/selfupdate"
)

func newReleaseCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "release",
		Short: "Sign releases for --auto-update (used by .ci/release)",
	}
	var keyPath string
	keygen := &cobra.Command{
		Use:   "keygen --key FILE",
		Short: "Create a release signing key and print its public key",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			pub, err := selfupdate.GenerateKey(keyPath)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(a.Out, pub)
			return err
		},
	}
	pubkey := &cobra.Command{
		Use:   "pubkey --key FILE",
		Short: "Print the public key of a release signing key",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			k, err := selfupdate.LoadKey(keyPath)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(a.Out, selfupdate.PublicKey(k))
			return err
		},
	}
	var ver, baseURL, dir string
	manifest := &cobra.Command{
		Use:   "manifest --key FILE --version V --base-url URL --dir DIR GOOS/GOARCH/NAME=PATH…",
		Short: "Write DIR/manifest.json for binaries under DIR and sign it (DIR/manifest.json.sig)",
		Long: `Write DIR/manifest.json listing each binary (a path under DIR) with its
SHA-256, size and URL (--base-url followed by its path relative to DIR),
and its Ed25519 signature DIR/manifest.json.sig. Publish DIR as is at
--base-url; miners and validators poll --update.url BASE-URL/manifest.json.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			k, err := selfupdate.LoadKey(keyPath)
			if err != nil {
				return err
			}
			var files []selfupdate.File
			for _, arg := range args {
				spec, path, ok := strings.Cut(arg, "=")
				parts := strings.Split(spec, "/")
				if !ok || len(parts) != 3 {
					return usageErr("%q is not GOOS/GOARCH/NAME=PATH", arg)
				}
				rel, err := filepath.Rel(dir, path)
				if err != nil || strings.HasPrefix(rel, "..") {
					return usageErr("%s is not under --dir %s", path, dir)
				}
				files = append(files, selfupdate.File{Platform: parts[0] + "/" + parts[1], Name: parts[2], Path: path,
					URL: strings.TrimSuffix(baseURL, "/") + "/" + filepath.ToSlash(rel)})
			}
			raw, err := selfupdate.BuildManifest(ver, files)
			if err != nil {
				return usageError(err)
			}
			out := filepath.Join(dir, "manifest.json")
			if err := os.WriteFile(out, raw, 0o644); err != nil {
				return err
			}
			if err := os.WriteFile(out+".sig", selfupdate.Sign(k, raw), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(a.Out, "%s\n%s.sig\n", out, out)
			return nil
		},
	}
	for _, c := range []*cobra.Command{keygen, pubkey, manifest} {
		c.Flags().StringVar(&keyPath, "key", "", "release signing key file (base64 Ed25519 seed, mode 600)")
		_ = c.MarkFlagRequired("key")
	}
	manifest.Flags().StringVar(&ver, "version", "", "release version (MAJOR.MINOR.PATCH)")
	manifest.Flags().StringVar(&baseURL, "base-url", "", "URL DIR is published at")
	manifest.Flags().StringVar(&dir, "dir", ".", "release directory holding the binaries")
	_ = manifest.MarkFlagRequired("version")
	_ = manifest.MarkFlagRequired("base-url")
	cmd.AddCommand(keygen, pubkey, manifest)
	return cmd
}
