package consumer_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/intakehq/intake/pipeline"
)

// Environment of a bare client child process (BenchmarkScaleOutBare): the test binary run again
// with bareChildEnv set reads presigned GET URLs from that file, one per line, and fetches the lines
// [from, to) of bareRangeEnv ("from:to"), instead of running the tests.
const (
	bareChildEnv = "INTAKE_BARE_CHILD"
	bareRangeEnv = "INTAKE_BARE_RANGE"
	// bareWorkers is the bare client's concurrency: the consumer's default workers.
	bareWorkers = 64
)

// bareChild does the one thing of the consumer's per-event work that involves no intake code at
// all: a ranged GET of an object's first pipeline.SniffLen bytes from MinIO, through a plain
// net/http client, bareWorkers at a time.
func bareChild() (childReport, error) {
	var rep childReport
	data, err := os.ReadFile(os.Getenv(bareChildEnv))
	if err != nil {
		return rep, err
	}
	urls := strings.Split(strings.TrimSpace(string(data)), "\n")
	var from, to int
	if _, err := fmt.Sscanf(os.Getenv(bareRangeEnv), "%d:%d", &from, &to); err != nil || from < 0 || to > len(urls) || from > to {
		return rep, fmt.Errorf("%s=%q: want from:to within %d URLs", bareRangeEnv, os.Getenv(bareRangeEnv), len(urls))
	}
	urls = urls[from:to]
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: bareWorkers}, Timeout: time.Minute}
	rangeHdr := "bytes=0-" + strconv.Itoa(pipeline.SniffLen-1)
	var next atomic.Int64
	began := selfUsage()
	err = runAll(bareWorkers, func() error {
		for i := next.Add(1) - 1; i < int64(len(urls)); i = next.Add(1) - 1 {
			if err := bareGet(client, urls[i], rangeHdr); err != nil {
				return err
			}
		}
		return nil
	})
	ended := selfUsage()
	rep.CPU, rep.Switches, rep.Processed = ended.cpu-began.cpu, ended.switches.sub(began.switches), int64(len(urls))
	return rep, err
}

func bareGet(client *http.Client, url, rangeHdr string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Range", rangeHdr)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusPartialContent && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET: %s", resp.Status)
	}
	return nil
}

// runBare fetches the URLs of file with procs bare client children, each a disjoint share of n,
// and returns their CPU and switches together.
func runBare(b *testing.B, file string, procs, n int) scaleOutRun {
	b.Helper()
	began := time.Now()
	type result struct {
		rep childReport
		err error
	}
	results := make(chan result, procs)
	for i := range procs {
		from, to := i*n/procs, (i+1)*n/procs
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), bareChildEnv+"="+file, fmt.Sprintf("%s=%d:%d", bareRangeEnv, from, to))
		cmd.Stderr = os.Stderr
		go func() {
			out, err := cmd.Output()
			if err != nil {
				results <- result{err: fmt.Errorf("bare child: %w", err)}
				return
			}
			var rep childReport
			sc := bufio.NewScanner(strings.NewReader(string(out)))
			for sc.Scan() { // the report is the last line
				err = json.Unmarshal(sc.Bytes(), &rep)
			}
			if err == nil && rep.Err != "" {
				err = fmt.Errorf("bare child: %s", rep.Err)
			}
			results <- result{rep, err}
		}()
	}
	run := scaleOutRun{procs: procs}
	var gets int64
	for range procs {
		r := <-results
		if r.err != nil {
			b.Fatal(r.err)
		}
		run.cpu += r.rep.CPU
		run.sw = run.sw.add(r.rep.Switches)
		gets += r.rep.Processed
	}
	run.took = time.Since(began)
	if gets != int64(n) {
		b.Fatalf("%d bare processes made %d GETs, want %d", procs, gets, n)
	}
	return run
}

// BenchmarkScaleOutBare is BenchmarkScaleOut's baseline without intake: the one piece of the
// consumer's per-event work that needs no intake code, a ranged GET of each of the 5,000 objects'
// first SniffLen bytes from the same MinIO, made by a plain net/http client with 64 at a time, in
// one process and split between two (the same order of eight runs). Its `bare-x-2proc-cpu` says
// what this host charges any Go client process for being split in two half-busy processes, beside
// `x-2proc-cpu`, what it charges intake's consumer. Presigning is done before, outside the timed
// runs.
func BenchmarkScaleOutBare(b *testing.B) {
	e := newBenchEnv(b, benchEvents)
	presign := s3.NewPresignClient(e.s3)
	var lines []string
	for _, o := range e.objs {
		req, err := presign.PresignGetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(o.key)},
			s3.WithPresignExpires(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		lines = append(lines, req.URL)
	}
	file := filepath.Join(b.TempDir(), "urls")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		b.Fatal(err)
	}
	for range b.N {
		var runs [3][]scaleOutRun
		for _, procs := range scaleOutOrder {
			runs[procs] = append(runs[procs], runBare(b, file, procs, benchEvents))
		}
		reportSplit(b, "bare client", "bare-", "GET", runs, benchEvents)
	}
}
