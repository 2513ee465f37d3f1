package intake

import (
	_ "github.com/MicahParks/keyfunc/v3"
	_ "github.com/alecthomas/kong"
	_ "github.com/aws/aws-sdk-go-v2/credentials"
	_ "github.com/gabriel-vasile/mimetype"
	_ "github.com/golang-jwt/jwt/v5"
	_ "github.com/hibiken/asynq"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/redis/go-redis/v9"
	_ "github.com/schollz/progressbar/v3"
	_ "github.com/stretchr/testify/require"
	_ "go.uber.org/goleak"
	_ "gopkg.in/yaml.v3"
)
