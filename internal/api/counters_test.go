package api

import (
	"strconv"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
)

// TestCountersCountLikeWithLabelValues: concurrent increments through the cache land on the
// CounterVec's children for the same label values, none lost or counted twice, and only the
// values used appear as series.
func TestCountersCountLikeWithLabelValues(t *testing.T) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "test_total", Help: "test"}, []string{"code"})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(vec)
	cs := newCounters(vec, strconv.Itoa)
	codes := []int{200, 201, 400, 401, 404, 413, 500, 503}
	const perCode = 500
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range perCode * len(codes) / 8 {
				cs.get(codes[(g+i)%len(codes)]).Inc()
			}
		})
	}
	wg.Wait()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, mfs, 1)
	require.Len(t, mfs[0].GetMetric(), len(codes), "one series per code used")
	for _, c := range codes {
		require.Equal(t, float64(perCode), testkit.Metric(t, reg, "test_total", "code", strconv.Itoa(c)), "code %d", c)
	}
	require.Same(t, vec.WithLabelValues("404"), cs.get(404), "the cache hands out the vec's own child")
	require.Len(t, *cs.list.Load(), len(codes), "each code cached once")
}
