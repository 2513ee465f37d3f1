package cli

import "context"

// startConsumer builds the consumer role's components. (Filled in by the consumer issue.)
func startConsumer(_ context.Context, _ *App) ([]Component, error) {
	return nil, nil
}
