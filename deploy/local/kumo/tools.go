//go:build tools

package tools

import _ "github.com/sivchari/kumo/cmd/kumo"
