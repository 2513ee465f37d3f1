package api

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// counters resolves a one-label CounterVec's children once per label value: WithLabelValues
// hashes the value and looks it up under a lock on every call, and the request counter's status
// code had to be formatted first (an allocation per request). A label value's child is created on
// first use, as WithLabelValues would, so /metrics shows the same series.
//
// The children are kept in a copy-on-write list (an API route answers with a handful of codes, a
// presign counter has five methods), read without a lock.
type counters[K comparable] struct {
	vec   *prometheus.CounterVec
	label func(K) string
	list  atomic.Pointer[[]counterEntry[K]]
}

type counterEntry[K comparable] struct {
	key K
	c   prometheus.Counter
}

func newCounters[K comparable](vec *prometheus.CounterVec, label func(K) string) *counters[K] {
	return &counters[K]{vec: vec, label: label}
}

// get returns the child counter of key.
func (cs *counters[K]) get(key K) prometheus.Counter {
	for {
		old := cs.list.Load()
		if old != nil {
			for _, e := range *old {
				if e.key == key {
					return e.c
				}
			}
		}
		c := cs.vec.WithLabelValues(cs.label(key))
		var grown []counterEntry[K]
		if old != nil {
			grown = append(grown, *old...)
		}
		grown = append(grown, counterEntry[K]{key, c})
		if cs.list.CompareAndSwap(old, &grown) {
			return c
		}
		// Another goroutine added a child meanwhile: look again (WithLabelValues returns the same
		// child for the same value, so nothing is counted twice).
	}
}
