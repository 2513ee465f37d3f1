// Package progress shows how far a long operator command (replay, reconcile) has got and prints
// its summary at the end.
//
// # Bar or lines
//
// [New] draws a progress bar (schollz/progressbar) when its writer is a terminal, and otherwise
// writes a plain line at most every [Options.Interval] (and one when it finishes), so that logs
// of a Kubernetes Job or a CI run stay readable:
//
//	replay dlq: 500/1000 (50.0%) 212.4 msg/s elapsed 2.4s
//
// A nil *Bar is valid and does nothing, so callers need not check.
//
// # Summary
//
// [Summary] is an ordered list of named figures, written as aligned text or as JSON.
package progress
