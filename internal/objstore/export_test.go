package objstore

// SetCopyLimits lowers the size above which Move copies part by part, for tests.
func SetCopyLimits(o *Objects, maxCopySize, partSize int64) {
	o.maxCopySize, o.copyPartSize = maxCopySize, partSize
}

// CopySource exposes copySource to the tests.
var CopySource = copySource
