package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Int is an integer that also decodes from an integral JSON float (Python
// clients may send 1.0 for 1) and from null (as 0), and refuses fractions,
// strings and values beyond ±2⁵³.
type Int int64

// UnmarshalJSON implements json.Unmarshaler.
func (n *Int) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*n = 0
		return nil
	}
	if len(b) == 0 || len(b) > 32 {
		return errors.New("not a number")
	}
	if i, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		if i > 1<<53 || i < -(1<<53) {
			return fmt.Errorf("integer %d out of range", i)
		}
		*n = Int(i)
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return errors.New("not a number")
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return fmt.Errorf("%s is not an integer in range", b)
	}
	*n = Int(f)
	return nil
}
