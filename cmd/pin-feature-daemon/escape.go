package main

import (
	"strconv"
	"unicode"
)

// safe makes a string from the host (a model name, a hostname, an error message quoting a file) harmless on a
// terminal: a string holding anything but printable characters (escape sequences, carriage returns, tabs
// that would break the table's columns, invalid UTF-8) is printed quoted with Go escapes, as strconv.Quote
// writes it; any other string is printed as is.
func safe(s string) string {
	for _, r := range s {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
