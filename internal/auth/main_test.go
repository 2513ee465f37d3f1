package auth

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that the JWKS refresh goroutines stop with their context.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
