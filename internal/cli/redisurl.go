package cli

import (
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/redact"
)

// parseRedisURL parses REDIS_URL for asynq. It checks the URL as the daemon's configuration does
// first: asynq.ParseRedisURI's error quotes the part of the URL it could not parse (`invalid port
// ":pa/ss"`), which may be the head of a password that no redaction would recognize.
func parseRedisURL(raw string) (asynq.RedisConnOpt, error) {
	if err := config.CheckRedisURL(raw); err != nil {
		return nil, err
	}
	opt, err := asynq.ParseRedisURI(raw)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL %s: %w", redact.URL(raw), redact.Error(err))
	}
	return opt, nil
}
