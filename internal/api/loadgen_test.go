package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The load generator runs in a child process (the test binary re-executed with loadgenEnv set), so
// that the benchmark process's CPU time is the server's alone. It keeps one HTTP/1.1 keep-alive
// connection per worker, writes a prebuilt request and reads the response with a minimal parser:
// a few microseconds of client CPU per request, far less than net/http's client.

const loadgenEnv = "INTAKE_LOADGEN"

// loadSpec is what the child is asked to do (JSON in loadgenEnv).
type loadSpec struct {
	Addr     string        `json:"addr"`
	Conns    int           `json:"conns"`
	Duration time.Duration `json:"duration"`
	Path     string        `json:"path"`
	APIKey   string        `json:"api_key"`
	Body     string        `json:"body"`
}

// loadResult is what it reports (JSON on stdout).
type loadResult struct {
	Requests  int64         `json:"requests"`
	Non2xx    int64         `json:"non_2xx"`
	Errors    int64         `json:"errors"`
	Elapsed   time.Duration `json:"elapsed"`
	MeanLat   time.Duration `json:"mean_latency"`
	FirstBody string        `json:"first_non_2xx"`
}

// runLoad starts the child and waits for its result.
func runLoad(spec loadSpec) (loadResult, error) {
	raw, err := json.Marshal(spec)
	if err != nil {
		return loadResult{}, err
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), loadgenEnv+"="+string(raw), "GOMAXPROCS=2")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return loadResult{}, fmt.Errorf("load generator: %w: %s", err, stderr.String())
	}
	var res loadResult
	if err := json.Unmarshal(out, &res); err != nil {
		return loadResult{}, fmt.Errorf("load generator output %q: %w", out, err)
	}
	return res, nil
}

// runLoadgenChild is the child's main.
func runLoadgenChild() int {
	var spec loadSpec
	if err := json.Unmarshal([]byte(os.Getenv(loadgenEnv)), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 2
	}
	req := []byte(fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nX-API-Key: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		spec.Path, spec.Addr, spec.APIKey, len(spec.Body), spec.Body))
	var requests, non2xx, errs, latency atomic.Int64
	var first atomic.Value
	deadline := time.Now().Add(spec.Duration)
	start := time.Now()
	var wg sync.WaitGroup
	for range spec.Conns {
		wg.Go(func() {
			conn, err := net.Dial("tcp", spec.Addr)
			if err != nil {
				errs.Add(1)
				return
			}
			defer conn.Close()
			br := bufio.NewReaderSize(conn, 16<<10)
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if _, err := conn.Write(req); err != nil {
					errs.Add(1)
					return
				}
				status, body, err := readResponse(br)
				if err != nil {
					errs.Add(1)
					return
				}
				latency.Add(int64(time.Since(t0)))
				requests.Add(1)
				if status < 200 || status > 299 {
					non2xx.Add(1)
					first.CompareAndSwap(nil, fmt.Sprintf("%d %s", status, body))
				}
			}
		})
	}
	wg.Wait()
	res := loadResult{Requests: requests.Load(), Non2xx: non2xx.Load(), Errors: errs.Load(), Elapsed: time.Since(start)}
	if res.Requests > 0 {
		res.MeanLat = time.Duration(latency.Load() / res.Requests)
	}
	if f, ok := first.Load().(string); ok {
		res.FirstBody = f
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// readResponse reads one HTTP/1.1 response (Content-Length or chunked body).
func readResponse(br *bufio.Reader) (int, []byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, err
	}
	length, chunked := -1, false
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		if len(h) <= 2 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			length, err = strconv.Atoi(string(value))
			if err != nil {
				return 0, nil, err
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")) && bytes.EqualFold(value, []byte("chunked")):
			chunked = true
		}
	}
	var body []byte
	switch {
	case chunked:
		for {
			sz, err := br.ReadSlice('\n')
			if err != nil {
				return 0, nil, err
			}
			n, err := strconv.ParseInt(string(bytes.TrimSpace(sz)), 16, 64)
			if err != nil {
				return 0, nil, err
			}
			chunk := make([]byte, n+2)
			if _, err := io.ReadFull(br, chunk); err != nil {
				return 0, nil, err
			}
			if n == 0 {
				break
			}
			body = append(body, chunk[:n]...)
		}
	case length >= 0:
		body = make([]byte, length)
		if _, err := io.ReadFull(br, body); err != nil {
			return 0, nil, err
		}
	default:
		return 0, nil, errors.New("response without length")
	}
	return status, body, nil
}
