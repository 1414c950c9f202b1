// Package archtest holds tests of the repository's structure: which
// internal packages may import which (the layers of DESIGN.md), that every
// package says what it is for, and that test helpers never reach a binary.
package archtest
