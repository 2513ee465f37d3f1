package reconcile

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// JSONReport is a Sink that writes a run's report as one JSON document listing every difference,
// however many: {"missing": [...], "stale": [...], "gone": [...], then the Report's fields}. The
// differences are written to temporary files as they are found (about 100 bytes a key, under
// os.TempDir, removed by Close), not kept in memory, and copied to the writer by Write.
//
// Use it as Options.Sink of one Run, then call Write with the run's report, then Close.
type JSONReport struct {
	kinds [3]spool // missing, stale, gone
}

// spool is one kind's JSON array elements, comma-separated, in a temporary file.
type spool struct {
	f   *os.File
	buf *bufio.Writer
	n   int
	err error // the first error writing it: Write reports it
}

// NewJSONReport returns an empty JSONReport; it creates its files when the first difference comes.
func NewJSONReport() *JSONReport { return &JSONReport{} }

// Missing spools m. It implements Sink.
func (j *JSONReport) Missing(m Missing) error { return j.kinds[0].add(m) }

// Stale spools s. It implements Sink.
func (j *JSONReport) Stale(s Stale) error { return j.kinds[1].add(s) }

// Gone spools g. It implements Sink.
func (j *JSONReport) Gone(g Gone) error { return j.kinds[2].add(g) }

func (s *spool) add(v any) error {
	if s.err != nil {
		return s.err
	}
	if s.f == nil {
		f, err := os.CreateTemp("", "intake-reconcile-*.json")
		if err != nil {
			s.err = fmt.Errorf("spool the report's keys: %w", err)
			return s.err
		}
		s.f, s.buf = f, bufio.NewWriterSize(f, 64<<10)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		s.err = err
		return err
	}
	if s.n > 0 {
		_ = s.buf.WriteByte(',')
	}
	if _, err := s.buf.Write(raw); err != nil {
		s.err = fmt.Errorf("spool the report's keys to %s: %w", s.f.Name(), err)
		return s.err
	}
	s.n++
	return nil
}

// copyTo writes the spooled elements to w.
func (s *spool) copyTo(w io.Writer) error {
	if s.err != nil {
		return s.err
	}
	if s.f == nil {
		return nil
	}
	if err := s.buf.Flush(); err != nil {
		return fmt.Errorf("spool the report's keys to %s: %w", s.f.Name(), err)
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("read back %s: %w", s.f.Name(), err)
	}
	_, err := io.Copy(w, s.f)
	return err
}

// Write writes the document: every spooled difference, then rep's counts and fix (rep's own
// samples are left out: the lists are complete).
func (j *JSONReport) Write(w io.Writer, rep *Report) error {
	tail := *rep
	tail.Missing, tail.Stale, tail.Gone = nil, nil, nil
	raw, err := json.Marshal(&tail)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	for i, name := range []string{`{"missing":[`, `],"stale":[`, `],"gone":[`} {
		if _, err := bw.WriteString(name); err != nil {
			return err
		}
		if err := j.kinds[i].copyTo(bw); err != nil {
			return err
		}
	}
	_, _ = bw.WriteString("],")
	_, _ = bw.Write(raw[1:]) // rep's fields, after its opening brace
	_ = bw.WriteByte('\n')
	return bw.Flush()
}

// Close removes the temporary files.
func (j *JSONReport) Close() error {
	var errs []error
	for i := range j.kinds {
		s := &j.kinds[i]
		if s.f == nil {
			continue
		}
		errs = append(errs, s.f.Close(), os.Remove(s.f.Name()))
		s.f, s.buf = nil, nil
	}
	return errors.Join(errs...)
}

var _ Sink = (*JSONReport)(nil)
