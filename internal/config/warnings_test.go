package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWarnings: what a valid configuration likely got wrong is warned about. A shutdown grace
// above 30s: the shipped Kubernetes manifests (terminationGracePeriodSeconds 45, the scheduler's
// 40) leave no room for more. A webhook timeout not below the grace: an attempt that takes its
// whole timeout outlasts the grace, and every shutdown cuts it off. The API's shutdown delay
// counts with the grace where the API runs.
func TestWarnings(t *testing.T) {
	t.Parallel()
	for name, tt := range map[string]struct {
		grace, delay, webhookTimeout time.Duration
		want                         []string // a substring of each warning, in order
	}{
		"defaults":                {grace: 25 * time.Second, webhookTimeout: 10 * time.Second},
		"the longest grace":       {grace: 30 * time.Second, webhookTimeout: 10 * time.Second},
		"a grace too long":        {grace: 31 * time.Second, webhookTimeout: 10 * time.Second, want: []string{"INTAKE_SHUTDOWN_GRACE: 31s is above 30s"}},
		"a webhook timeout below": {grace: 25 * time.Second, webhookTimeout: 24 * time.Second},
		"a webhook timeout equal": {grace: 25 * time.Second, webhookTimeout: 25 * time.Second, want: []string{"INTAKE_WEBHOOK_TIMEOUT: 25s is not below INTAKE_SHUTDOWN_GRACE (25s)"}},
		"a webhook timeout above": {grace: 5 * time.Second, webhookTimeout: 10 * time.Second, want: []string{"INTAKE_WEBHOOK_TIMEOUT: 10s is not below INTAKE_SHUTDOWN_GRACE (5s)"}},
		"a delay within":          {grace: 20 * time.Second, delay: 10 * time.Second, webhookTimeout: 10 * time.Second},
		"a delay too long":        {grace: 25 * time.Second, delay: 10 * time.Second, webhookTimeout: 10 * time.Second, want: []string{"INTAKE_SHUTDOWN_GRACE: 25s plus INTAKE_SHUTDOWN_DELAY 10s is above 30s"}},
		"both": {grace: time.Minute, webhookTimeout: 5 * time.Minute, want: []string{
			"INTAKE_SHUTDOWN_GRACE: 1m0s is above 30s", "INTAKE_WEBHOOK_TIMEOUT: 5m0s is not below INTAKE_SHUTDOWN_GRACE (1m0s)"}},
	} {
		c := validConfig()
		c.ShutdownGrace, c.ShutdownDelay, c.Webhook.Timeout = tt.grace, tt.delay, tt.webhookTimeout
		require.NoError(t, c.Validate(AllRoles), name)
		w := c.Warnings(AllRoles)
		require.Len(t, w, len(tt.want), "%s: %q", name, w)
		// Without the jobs role no webhook is delivered: only the grace is warned about.
		noJobs := c.Warnings([]string{RoleAPI, RoleConsumer, RoleScheduler})
		for _, nw := range noJobs {
			require.NotContains(t, nw, "INTAKE_WEBHOOK_TIMEOUT", name)
		}
		require.Len(t, noJobs, len(w)-boolInt(tt.webhookTimeout >= tt.grace), name)
		for i, want := range tt.want {
			require.Contains(t, w[i], want, name)
		}
		if tt.grace+tt.delay > MaxShutdownGraceWarn {
			require.Contains(t, w[0], "terminationGracePeriodSeconds", name)
		}
		// Only a process serving the API waits for the delay.
		if tt.grace <= MaxShutdownGraceWarn {
			for _, nw := range c.Warnings([]string{RoleConsumer, RoleJobs}) {
				require.NotContains(t, nw, "INTAKE_SHUTDOWN_GRACE:", name)
			}
		}
	}
}

func TestUsesDatabase(t *testing.T) {
	t.Parallel()
	require.False(t, UsesDatabase([]string{RoleScheduler}))
	for _, r := range []string{RoleAPI, RoleConsumer, RoleJobs} {
		require.True(t, UsesDatabase([]string{r, RoleScheduler}), r)
	}
	require.True(t, UsesDatabase(AllRoles))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
