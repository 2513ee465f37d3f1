package cli

import "context"

// startJobs builds the jobs role's components. (Filled in by the jobs issue.)
func startJobs(_ context.Context, _ *App) ([]Component, error) {
	return nil, nil
}
