package cli

import "context"

// startScheduler builds the scheduler role's components. (Filled in by the scheduler issue.)
func startScheduler(_ context.Context, _ *App) ([]Component, error) {
	return nil, nil
}
