package main

import (
	"fmt"
	"math"
	"time"
)

// checkRange says what is wrong with a numeric flag value that must be finite and in [lo, hi) (hi
// included when closed). NaN and Inf fail every comparison, so they are refused by name first: a
// NaN jitter once made the run loop spin.
func checkRange(flag string, v, lo, hi float64, closed bool) error {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return fmt.Errorf("--%s must be a finite number, got %g", flag, v)
	case v < lo || v > hi || (!closed && v == hi):
		bracket := ")"
		if closed {
			bracket = "]"
		}
		return fmt.Errorf("--%s must be in [%g, %g%s, got %g", flag, lo, hi, bracket, v)
	}
	return nil
}

// checkPositive says what is wrong with a numeric flag value that must be finite, above 0 and at most hi.
func checkPositive(flag string, v, hi float64) error {
	if err := checkRange(flag, v, 0, hi, true); err != nil || v > 0 {
		return err
	}
	return fmt.Errorf("--%s must be above 0, got %g", flag, v)
}

// checkDuration says what is wrong with a duration flag that must be in [lo, hi].
func checkDuration(flag string, d, lo, hi time.Duration) error {
	if d < lo || d > hi {
		return fmt.Errorf("--%s must be between %s and %s, got %s", flag, lo, hi, d)
	}
	return nil
}

// Upper bounds of duration flags: far beyond any sensible value, and small enough that adding jitter or
// tripling them (the feature file's expiry) cannot overflow.
const (
	maxInterval     = 30 * 24 * time.Hour
	maxBenchTimeout = 24 * time.Hour
	maxBenchMaxAge  = 365 * 24 * time.Hour
	maxDriverWait   = 24 * time.Hour
)
