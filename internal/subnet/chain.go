package subnet

import "context"

// Signer signs on behalf of an sr25519 account (a hotkey or a coldkey).
// wallet.Keypair implements it.
type Signer interface {
	// SS58 is the account's address (prefix 42).
	SS58() string
	// PublicKey is the 32-byte sr25519 public key.
	PublicKey() []byte
	// Sign signs msg with the "substrate" signing context.
	Sign(msg []byte) ([]byte, error)
}

// The role interfaces below follow go-ethereum's interfaces.go: small, one
// capability each, implemented by chain/local (the embedded development
// chain) and chain/subtensor (Bittensor networks). Services declare the
// subset they consume. Every method may fail with EUNAVAILABLE when the chain
// cannot be reached or does not answer before ctx's deadline.

// BlockReader reads the chain head.
type BlockReader interface {
	// CurrentBlock returns the number of the best block.
	CurrentBlock(ctx context.Context) (uint64, error)
}

// MetagraphReader reads a subnet's neurons.
type MetagraphReader interface {
	// Metagraph returns all neurons of netuid at the current block.
	// Errors: ENOSUBNET.
	Metagraph(ctx context.Context, netuid NetUID) (*Metagraph, error)
}

// HyperparamsReader reads a subnet's parameters.
type HyperparamsReader interface {
	// Hyperparameters returns netuid's parameters. Errors: ENOSUBNET.
	Hyperparameters(ctx context.Context, netuid NetUID) (Hyperparameters, error)
}

// RegistrationReader answers registration questions without a full metagraph.
type RegistrationReader interface {
	// UIDForHotkey returns hotkey's uid on netuid; ok is false when it is not
	// registered there. Errors: ENOSUBNET.
	UIDForHotkey(ctx context.Context, netuid NetUID, hotkey string) (uid UID, ok bool, err error)
	// NetUIDsForHotkey lists the subnets where hotkey is registered.
	NetUIDsForHotkey(ctx context.Context, hotkey string) ([]NetUID, error)
	// SubnetworkN returns the number of registered uids of netuid.
	SubnetworkN(ctx context.Context, netuid NetUID) (uint16, error)
	// BurnCost returns the TAO recycled by a burned registration on netuid.
	BurnCost(ctx context.Context, netuid NetUID) (Balance, error)
}

// BalanceReader reads free balances.
type BalanceReader interface {
	// Balance returns the free balance of the account with address ss58.
	Balance(ctx context.Context, ss58 string) (Balance, error)
}

// Registrar registers hotkeys by burning TAO.
type Registrar interface {
	// BurnedRegister registers hotkey on netuid, paid by coldkey (which then
	// owns the hotkey). It returns the assigned uid; registering a hotkey
	// already registered on netuid returns its uid and EALREADY.
	// Errors: ENOSUBNET, EINSUFFICIENTBALANCE, ERATELIMITED, EALREADY,
	// EUNAUTHORIZED (hotkey owned by another coldkey).
	BurnedRegister(ctx context.Context, coldkey Signer, netuid NetUID, hotkey string) (UID, error)
}

// AxonServer publishes a hotkey's axon endpoint.
type AxonServer interface {
	// ServeAxon sets the axon info of the signing hotkey on netuid.
	// Errors: ENOTREGISTERED, ERATELIMITED, EINVALID (address).
	ServeAxon(ctx context.Context, hotkey Signer, netuid NetUID, axon AxonInfo) error
}

// PrometheusServer publishes a hotkey's metrics endpoint.
type PrometheusServer interface {
	// ServePrometheus sets the prometheus info of the signing hotkey on
	// netuid (Block is ignored: the chain sets it).
	// Errors: ENOTREGISTERED, ERATELIMITED, EINVALID (address).
	ServePrometheus(ctx context.Context, hotkey Signer, netuid NetUID, info PrometheusInfo) error
}

// WeightSetter submits weights.
type WeightSetter interface {
	// SetWeights sets the signing hotkey's weights on netuid. weights are
	// u16 values (see MaxUpscale), one per uid, version is the subnet's
	// weights version key. Errors: ENOTREGISTERED, ERATELIMITED,
	// EINVALIDWEIGHTS, ECOMMITREVEAL, ENOSUBNET.
	SetWeights(ctx context.Context, hotkey Signer, netuid NetUID, uids []UID, weights []uint16, version uint64) error
}

// WeightCommitter submits timelocked weights commits (commit-reveal v4):
// the weights are encrypted to a round of the chain's beacon and the chain
// reveals them itself in the reveal epoch.
type WeightCommitter interface {
	// CommitReveal returns netuid's commit-reveal settings and the chain
	// state a commit's reveal round is computed from. Errors: ENOSUBNET.
	CommitReveal(ctx context.Context, netuid NetUID) (CommitReveal, error)
	// CommitTimelockedWeights commits the signing hotkey's encrypted
	// weights (see WeightsPayload) for reveal at beacon round revealRound.
	// Errors: ECOMMITREVEALOFF, ENOTREGISTERED, ERATELIMITED (commit rate
	// limit, or too many unrevealed commits), EINVALID (version, commit,
	// round), ENOSUBNET.
	CommitTimelockedWeights(ctx context.Context, hotkey Signer, netuid NetUID, commit []byte, revealRound uint64, version uint16) error
	// Weights returns the weights row of uid on netuid as the chain holds
	// it (empty when it has none). Errors: ENOSUBNET.
	Weights(ctx context.Context, netuid NetUID, uid UID) ([]UID, []uint16, error)
}

// Staker moves TAO from a coldkey's balance to stake on a hotkey.
type Staker interface {
	// AddStake stakes amount from coldkey to hotkey on netuid.
	// Errors: EINSUFFICIENTBALANCE, ENOTREGISTERED, ENOSUBNET.
	AddStake(ctx context.Context, coldkey Signer, netuid NetUID, hotkey string, amount Balance) error
}

// Chain is everything a client of either chain implementation can do.
// Services never take a Chain: they declare the subset they consume.
type Chain interface {
	BlockReader
	MetagraphReader
	HyperparamsReader
	RegistrationReader
	BalanceReader
	Registrar
	AxonServer
	PrometheusServer
	WeightSetter
	WeightCommitter
	Staker
	// Close releases the connection.
	Close() error
}
