package market

// MaxScoredGPUs is the most GPUs of one miner that count towards its score.
const MaxScoredGPUs = 8

// Score is the score of a miner whose Proof-of-GPU verified count GPUs of
// model: base score × min(count, 8), normalised so that 8 GPUs of the best
// model in the table score 1. An unknown model, a count ≤ 0 or a table whose
// scores are all 0 score 0 (a failed proof is scored with count 0).
func Score(t *GPUTable, model string, count int) float64 {
	if t == nil || count <= 0 || t.best <= 0 {
		return 0
	}
	m, ok := t.Lookup(model)
	if !ok {
		return 0
	}
	return m.BaseScore * float64(min(count, MaxScoredGPUs)) / (MaxScoredGPUs * t.best)
}
