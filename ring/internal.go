package ring

import (
	"fmt"
	"math/bits"
	"reflect"
)

// cacheLinePad separates fields written by different goroutines. Lines are
// 64 bytes on amd64 and arm64, but Intel's adjacent-line prefetcher fetches
// 128-byte pairs, so two hot fields 64 bytes apart can still ping-pong. The
// pads are whole (not "128 minus the fields before them") because the Go
// allocator aligns these structs to 8 or 16 bytes, not to a line: a full pad
// between two groups guarantees they never share a line whatever the base
// address.
const cacheLinePad = 128

type pad [cacheLinePad]byte

// maxCapacity keeps capacities (and their power-of-two round-up) well inside
// int on every platform.
const maxCapacity = 1 << 30

// roundCapacity returns the smallest power of two >= capacity, and panics
// with a message naming caller if capacity is out of range.
func roundCapacity(caller string, capacity int) uint64 {
	if capacity < 1 || capacity > maxCapacity {
		panic(fmt.Sprintf("ring: %s: capacity %d out of range [1, %d]", caller, capacity, maxCapacity))
	}
	return 1 << bits.Len64(uint64(capacity-1))
}

// needsClear reports whether a T left in a slot could keep heap memory alive,
// i.e. whether T contains a pointer (pointer, string, slice, map, chan, func,
// interface) anywhere in its layout. It runs once per ring, at construction.
func needsClear[T any]() bool {
	return hasPointers(reflect.TypeFor[T]())
}

func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return false
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
		return false
	default:
		return true
	}
}
