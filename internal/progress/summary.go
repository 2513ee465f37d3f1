package progress

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Field is one named figure of a Summary.
type Field struct {
	// Name is the figure's name ("sent").
	Name string
	// Value is printed with %v (numbers, strings, durations).
	Value any
}

// Summary is what a command prints when it ends: a title, the time it took and ordered figures.
type Summary struct {
	// Title names the operation ("replay dlq").
	Title string
	// Elapsed is how long the operation took.
	Elapsed time.Duration
	// Fields are the figures, in print order.
	Fields []Field
	// Notes are free sentences printed after the figures (warnings, next steps).
	Notes []string
}

// Add appends a figure and returns the summary for chaining.
func (s *Summary) Add(name string, value any) *Summary {
	s.Fields = append(s.Fields, Field{Name: name, Value: value})
	return s
}

// Note appends a sentence.
func (s *Summary) Note(format string, args ...any) *Summary {
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
	return s
}

// Rate returns count per second over Elapsed (0 when nothing elapsed).
func (s *Summary) Rate(count int) float64 {
	if sec := s.Elapsed.Seconds(); sec > 0 {
		return float64(count) / sec
	}
	return 0
}

// WriteText prints the summary as aligned "name  value" lines under a title line.
func (s *Summary) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "%s: done in %s\n", s.Title, s.Elapsed.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, f := range s.Fields {
		v := f.Value
		if x, ok := v.(float64); ok {
			v = fmt.Sprintf("%.1f", x)
		}
		fmt.Fprintf(tw, "  %s\t%v\n", f.Name, v)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	for _, n := range s.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	return nil
}

// MarshalJSON renders {"title":…, "elapsed_seconds":…, "<name>": value…, "notes": […]}.
func (s *Summary) MarshalJSON() ([]byte, error) {
	m := map[string]any{"title": s.Title, "elapsed_seconds": s.Elapsed.Seconds()}
	for _, f := range s.Fields {
		v := f.Value
		if d, ok := v.(time.Duration); ok {
			v = d.String()
		}
		m[f.Name] = v
	}
	if len(s.Notes) > 0 {
		m["notes"] = s.Notes
	}
	return json.Marshal(m)
}
