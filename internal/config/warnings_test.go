package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWarnings: a shutdown grace above 30s is accepted but warned about: the shipped Kubernetes
// manifests (terminationGracePeriodSeconds 45, the scheduler's 40) leave no room for more.
func TestWarnings(t *testing.T) {
	t.Parallel()
	c := validConfig()
	c.ShutdownGrace = 30 * time.Second
	require.Empty(t, c.Warnings())
	c.ShutdownGrace = 31 * time.Second
	require.NoError(t, c.Validate(AllRoles))
	w := c.Warnings()
	require.Len(t, w, 1)
	require.Contains(t, w[0], "INTAKE_SHUTDOWN_GRACE: 31s is above 30s")
	require.Contains(t, w[0], "terminationGracePeriodSeconds")
}

func TestUsesDatabase(t *testing.T) {
	t.Parallel()
	require.False(t, UsesDatabase([]string{RoleScheduler}))
	for _, r := range []string{RoleAPI, RoleConsumer, RoleJobs} {
		require.True(t, UsesDatabase([]string{r, RoleScheduler}), r)
	}
	require.True(t, UsesDatabase(AllRoles))
}
