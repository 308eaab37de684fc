package query

import (
	"errors"
	"fmt"
	"strconv"
)

// NewSortKey returns the sort_on element [key, direction]: direction must be "ascending" or
// "descending" (any other word is an error, as in jIO).
func NewSortKey(key, direction string) (SortKey, error) {
	switch direction {
	case "ascending":
		return SortKey{Key: key}, nil
	case "descending":
		return SortKey{Key: key, Descending: true}, nil
	}
	return SortKey{}, fmt.Errorf("sort_on %s: direction must be \"ascending\" or \"descending\", got %s", strconv.Quote(key), strconv.Quote(direction))
}

// ParseLimit reads jIO's limit: [] (none), [skip] or [skip, count], where count 0 means no
// cap. Negative numbers and longer lists are errors.
func ParseLimit(limit []int) (skip, count int, err error) {
	switch len(limit) {
	case 0:
		return 0, 0, nil
	case 1:
		skip = limit[0]
	case 2:
		skip, count = limit[0], limit[1]
	default:
		return 0, 0, errors.New("limit: want [skip] or [skip, count]")
	}
	if skip < 0 || count < 0 {
		return 0, 0, errors.New("limit: skip and count must not be negative")
	}
	return skip, count, nil
}
