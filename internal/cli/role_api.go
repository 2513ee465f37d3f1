package cli

import "context"

// startAPI builds the api role's components. (Filled in by the api issue.)
func startAPI(_ context.Context, _ *App) ([]Component, error) {
	return nil, nil
}
