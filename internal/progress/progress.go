package progress

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// IsTerminal reports whether w is a terminal (an *os.File on a TTY).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Options configure a Bar.
type Options struct {
	// Description names the operation ("replay dlq").
	Description string
	// Total is the expected count, or -1 (or 0) when unknown.
	Total int64
	// Unit names what is counted ("msg", "objects"); used in rates.
	Unit string
	// Interval is the minimum time between two plain lines (default 2s).
	Interval time.Duration
	// Terminal forces the bar (true) or plain lines (false); nil detects it from the writer.
	Terminal *bool
}

// Bar reports progress, as a bar on a terminal or as plain lines elsewhere. Its methods are safe
// for concurrent use; a nil *Bar does nothing.
type Bar struct {
	mu       sync.Mutex
	w        io.Writer
	bar      *progressbar.ProgressBar // nil in plain mode
	desc     string
	unit     string
	total    int64
	count    int64
	start    time.Time
	last     time.Time
	interval time.Duration
	finished bool
}

// New returns a Bar writing to w.
func New(w io.Writer, o Options) *Bar {
	b := &Bar{
		w: w, desc: o.Description, unit: cmp.Or(o.Unit, "items"), total: o.Total,
		start: time.Now(), interval: cmp.Or(o.Interval, 2*time.Second),
	}
	if b.total <= 0 {
		b.total = -1
	}
	b.last = b.start
	isTTY := IsTerminal(w)
	if o.Terminal != nil {
		isTTY = *o.Terminal
	}
	if isTTY {
		b.bar = progressbar.NewOptions64(b.total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(b.desc),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString(b.unit),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionFullWidth(),
			progressbar.OptionSetRenderBlankState(true),
		)
	}
	return b
}

// Add counts n more items done.
func (b *Bar) Add(n int) {
	if b == nil || n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.count += int64(n)
	if b.bar != nil {
		if b.total > 0 && b.count >= b.total {
			// progressbar finishes itself at its max; counts are approximate and more may come,
			// so the bar's max stays ahead of the count until Finish.
			b.total = b.count
			b.bar.ChangeMax64(b.count + 1)
		}
		_ = b.bar.Add64(int64(n))
		return
	}
	if now := time.Now(); now.Sub(b.last) >= b.interval {
		b.last = now
		b.line(now)
	}
}

// SetTotal changes the expected count (-1: unknown).
func (b *Bar) SetTotal(total int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if total <= 0 {
		total = -1
	}
	b.total = total
	if b.bar != nil {
		b.bar.ChangeMax64(total)
	}
}

// Count returns the items counted so far.
func (b *Bar) Count() int64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.count
}

// Finish ends the bar's line (terminal) or writes a last line (plain). Calling it twice is
// harmless.
func (b *Bar) Finish() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return
	}
	b.finished = true
	if b.bar != nil {
		if b.count > 0 && (b.total <= 0 || b.count >= b.total) {
			// Done: draw the full bar with the final count (an unknown total becomes the count).
			b.bar.ChangeMax64(max(b.count, 1))
			_ = b.bar.Finish()
		} else {
			_ = b.bar.Exit() // stopped early: keep the bar where it is
		}
		fmt.Fprintln(b.w)
		return
	}
	b.line(time.Now())
}

// line writes one plain progress line; b.mu is held.
func (b *Bar) line(now time.Time) {
	elapsed := now.Sub(b.start)
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(b.count) / s
	}
	done := fmt.Sprintf("%d", b.count)
	if b.total > 0 {
		done = fmt.Sprintf("%d/%d (%.1f%%)", b.count, b.total, 100*float64(b.count)/float64(b.total))
	}
	fmt.Fprintf(b.w, "%s: %s %.1f %s/s elapsed %s\n", b.desc, done, rate, b.unit, elapsed.Round(100*time.Millisecond))
}
