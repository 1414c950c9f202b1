package local

import "github.com/nicompute/nicompute/internal/sqlite"

// schema is the chain file's layout. Amounts are rao; blocks are block
// numbers; weights and bonds rows are JSON arrays. The beacon row holds the
// chain's own BLS beacon key (this is a development chain: whoever reads
// the file can decrypt every commit).
var schema = sqlite.Schema{
	Name: "chain_local",
	Migrations: []string{`
CREATE TABLE chain (
	id           INTEGER PRIMARY KEY CHECK (id = 1),
	genesis_hash BLOB    NOT NULL,
	genesis      TEXT    NOT NULL,
	block        INTEGER NOT NULL CHECK (block >= 0),
	issuance     INTEGER NOT NULL CHECK (issuance >= 0),
	next_netuid  INTEGER NOT NULL
);
CREATE TABLE accounts (
	address TEXT    PRIMARY KEY,
	free    INTEGER NOT NULL DEFAULT 0 CHECK (free >= 0),
	nonce   INTEGER NOT NULL DEFAULT 0 CHECK (nonce >= 0)
);
CREATE TABLE subnets (
	netuid                 INTEGER PRIMARY KEY,
	owner                  TEXT    NOT NULL,
	created_at             INTEGER NOT NULL,
	last_epoch             INTEGER NOT NULL,
	epochs                 INTEGER NOT NULL DEFAULT 0,
	regs_block             INTEGER NOT NULL DEFAULT 0,
	regs_count             INTEGER NOT NULL DEFAULT 0,
	tempo                  INTEGER NOT NULL,
	burn                   INTEGER NOT NULL,
	immunity_period        INTEGER NOT NULL,
	max_uids               INTEGER NOT NULL,
	weights_rate_limit     INTEGER NOT NULL,
	weights_version        INTEGER NOT NULL DEFAULT 0,
	min_allowed_weights    INTEGER NOT NULL,
	max_validators         INTEGER NOT NULL,
	activity_cutoff        INTEGER NOT NULL,
	serving_rate_limit     INTEGER NOT NULL,
	max_regs_per_block     INTEGER NOT NULL,
	kappa                  INTEGER NOT NULL,
	bonds_moving_avg       INTEGER NOT NULL,
	emission_per_block     INTEGER NOT NULL,
	owner_cut              INTEGER NOT NULL
);
CREATE TABLE hotkeys (
	hotkey     TEXT    PRIMARY KEY,
	coldkey    TEXT    NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE TABLE neurons (
	netuid          INTEGER NOT NULL REFERENCES subnets (netuid),
	uid             INTEGER NOT NULL,
	hotkey          TEXT    NOT NULL REFERENCES hotkeys (hotkey),
	registered_at   INTEGER NOT NULL,
	last_update     INTEGER NOT NULL,
	weights_at      INTEGER,
	weights         TEXT    NOT NULL DEFAULT '[]',
	bonds           TEXT    NOT NULL DEFAULT '[]',
	axon_block      INTEGER NOT NULL DEFAULT 0,
	axon_version    INTEGER NOT NULL DEFAULT 0,
	axon_ip         TEXT    NOT NULL DEFAULT '0.0.0.0',
	axon_port       INTEGER NOT NULL DEFAULT 0,
	axon_ip_type    INTEGER NOT NULL DEFAULT 4,
	axon_protocol   INTEGER NOT NULL DEFAULT 0,
	axon_served     INTEGER NOT NULL DEFAULT 0,
	active          INTEGER NOT NULL DEFAULT 0,
	validator_permit INTEGER NOT NULL DEFAULT 0,
	rank            REAL    NOT NULL DEFAULT 0,
	trust           REAL    NOT NULL DEFAULT 0,
	consensus       REAL    NOT NULL DEFAULT 0,
	incentive       REAL    NOT NULL DEFAULT 0,
	dividends       REAL    NOT NULL DEFAULT 0,
	validator_trust REAL    NOT NULL DEFAULT 0,
	emission        INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (netuid, uid),
	UNIQUE (netuid, hotkey)
);
CREATE INDEX neurons_hotkey ON neurons (hotkey);
CREATE TABLE stakes (
	netuid  INTEGER NOT NULL REFERENCES subnets (netuid),
	hotkey  TEXT    NOT NULL,
	coldkey TEXT    NOT NULL,
	amount  INTEGER NOT NULL CHECK (amount >= 0),
	PRIMARY KEY (netuid, hotkey, coldkey)
);
`, `
ALTER TABLE chain ADD COLUMN faucet_minted INTEGER NOT NULL DEFAULT 0 CHECK (faucet_minted >= 0);
`, `
ALTER TABLE subnets ADD COLUMN commit_reveal INTEGER NOT NULL DEFAULT 1;
ALTER TABLE subnets ADD COLUMN reveal_period INTEGER NOT NULL DEFAULT 1;
ALTER TABLE subnets ADD COLUMN epoch_index INTEGER NOT NULL DEFAULT 0;
ALTER TABLE neurons ADD COLUMN commit_at INTEGER;
CREATE TABLE beacon (
	id         INTEGER PRIMARY KEY CHECK (id = 1),
	secret     BLOB    NOT NULL,
	genesis_ms INTEGER NOT NULL,
	period_ms  INTEGER NOT NULL CHECK (period_ms > 0)
);
CREATE TABLE weight_commits (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	netuid       INTEGER NOT NULL REFERENCES subnets (netuid),
	epoch        INTEGER NOT NULL,
	hotkey       TEXT    NOT NULL,
	block        INTEGER NOT NULL,
	commit_bytes BLOB    NOT NULL,
	reveal_round INTEGER NOT NULL
);
CREATE INDEX weight_commits_epoch ON weight_commits (netuid, epoch, id);
`, prometheusSchema},
}
