package pipeline

// DecodeWith is decode with (fast) or without the scan of the top-level names.
func DecodeWith(body []byte, fast bool) ([]Event, error) { return decode(body, false, fast) }
