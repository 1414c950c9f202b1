// Package pog is Proof-of-GPU: the protocol between a validator and the
// worker it runs inside a rented container, the math that lets the validator
// check a full n×n matrix product in O(n) per element, and the
// identification of the GPU model from the validator's own wall-clock.
//
// The worker generates A and B from a counter-based generator
// (Philox-4x32-10) keyed by the validator's fresh 128-bit seed, so no entry
// follows from others (the original's A[i][j] = f(seed+i+j) made C Hankel and
// computable in O(n²) without multiplying). Values are k/2048 with k uniform
// in [−2048, 2047]: exact in fp16 with all 11 significant bits used, products
// exact in fp32. The worker computes C = A·Bᵀ with fp32 accumulation, hashes
// C in 1 KiB chunks into a SHA-256 Merkle tree and commits to the root; the
// validator times that, then asks for DefaultChallenges elements in distinct
// rows and checks each against Σ k_a·k_b computed exactly in int64 and its
// Merkle path. Identify accepts the claimed model only when the wall-clock
// and the memory the test needed are consistent with it.
//
// The worker side runs a Backend: CPU (pure Go), Sim (devnet only; refused
// by validators elsewhere) and, in the separate nicompute-pog binary,
// internal/pog/cuda.
package pog
