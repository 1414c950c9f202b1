package protocol

// A nicompute miner gives the test leases of each validator (Allocate with
// device_requirement.testing) a cache directory of that validator's own,
// kept across leases, so that the validator uploads its Proof-of-GPU worker
// once per worker version rather than into every test lease. Before it
// runs a cached worker, the validator has the miner's own nicompute binary
// — bind-mounted read-only into every lease — hash the file, and uploads
// it again unless the hash is the worker's. Leases of other miners (SN27's
// Python miner) have neither; the validator then uploads the worker into a
// fresh directory of the lease as before.
const (
	// PoGCacheDir is where a test lease has its validator's cache.
	PoGCacheDir = "/.nicompute/cache"
	// HashCommand, followed by a file's path, prints the SHA-256 of the
	// file in lower-case hex and a newline, or fails: the miner's
	// `nicompute sshd sha256` at the path where every lease has it.
	HashCommand = "/.nicompute/bin/nicompute sshd sha256"
)
