package multipart

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3's multipart limits.
const (
	// MaxParts is the number of parts an upload may have; part numbers are 1..MaxParts.
	MaxParts = 10000
	// MinPartSize is the smallest size of every part but the last.
	MinPartSize = 5 << 20
	// MaxPartSize is the largest size of one part.
	MaxPartSize = 5 << 30
	// MaxObjectSize is the largest object a multipart upload may build.
	MaxObjectSize = 5 << 40
	// maxETagLen bounds the ETags a client may name (S3's are 34 characters, quotes included).
	maxETagLen = 128
)

// Part is one part S3 holds for an upload.
type Part struct {
	// Number is the part number (1..MaxParts).
	Number int32
	// ETag is the part's ETag as S3 returned it (quoted).
	ETag string
	// Size is the part's length in bytes.
	Size int64
	// LastModified is when the part was uploaded, when S3 says.
	LastModified *time.Time
}

// CompletedPart is a part a client names in a complete request.
type CompletedPart struct {
	// Number is the part number.
	Number int32
	// ETag is the ETag the part's upload returned (quoted or not).
	ETag string
}

// PartsError says what is wrong with a list of part numbers or of completed parts (the client's
// fault: a 400).
type PartsError struct {
	// Detail explains the problem to the client.
	Detail string
}

func (e *PartsError) Error() string { return e.Detail }

func partsErrorf(format string, args ...any) *PartsError {
	return &PartsError{Detail: fmt.Sprintf(format, args...)}
}

// CheckPartNumbers checks a list of part numbers to sign: 1 to maxCount numbers, each in
// 1..MaxParts, none twice. It is the one validator of part numbers: presign requests, Uppy's single
// part route and complete requests all go through it.
func CheckPartNumbers(nums []int32, maxCount int) error {
	if len(nums) == 0 || len(nums) > maxCount {
		return partsErrorf("list 1 to %d part numbers (got %d)", maxCount, len(nums))
	}
	seen := make(map[int32]bool, len(nums))
	for _, n := range nums {
		if n < 1 || n > MaxParts {
			return partsErrorf("part number %d is not in 1..%d", n, MaxParts)
		}
		if seen[n] {
			return partsErrorf("part number %d appears twice", n)
		}
		seen[n] = true
	}
	return nil
}

// ObjectETag is the ETag S3 gives the object a multipart upload of parts (in any order) completes
// to: the MD5 of the parts' MD5s (their ETags, in part-number order) and the number of parts,
// "<hex>-<n>". ok is false when the parts are not a valid complete request or an ETag is not an MD5
// (32 hex digits, as S3's and MinIO's part ETags are), so that nothing can be told from it. A
// completion retried after its answer was lost is told apart from another parts list by it.
func ObjectETag(parts []CompletedPart) (etag string, ok bool) {
	sorted, err := checkCompleted(parts)
	if err != nil {
		return "", false
	}
	h := md5.New()
	for _, p := range sorted {
		sum, err := hex.DecodeString(unquote(p.ETag))
		if err != nil || len(sum) != md5.Size {
			return "", false
		}
		h.Write(sum)
	}
	return hex.EncodeToString(h.Sum(nil)) + "-" + strconv.Itoa(len(sorted)), true
}

// checkCompleted checks the parts of a complete request (numbers as CheckPartNumbers, an ETag on
// each) and returns them sorted by number.
func checkCompleted(parts []CompletedPart) ([]CompletedPart, error) {
	nums := make([]int32, len(parts))
	for i, p := range parts {
		nums[i] = p.Number
	}
	if err := CheckPartNumbers(nums, MaxParts); err != nil {
		return nil, err
	}
	for _, p := range parts {
		if e := unquote(p.ETag); e == "" || len(p.ETag) > maxETagLen {
			return nil, partsErrorf("part %d has no valid etag", p.Number)
		}
	}
	sorted := slices.Clone(parts)
	slices.SortFunc(sorted, func(a, b CompletedPart) int { return int(a.Number) - int(b.Number) })
	return sorted, nil
}

// Plan is how an upload of a known total is cut into parts: the bound the API signs part URLs by.
type Plan struct {
	// Size is the most the parts may sum to: the declared size, or the policy's maximum when the
	// client declared none.
	Size int64
	// PartSize is the declared size of every part but the last (the last holds the rest); 0 when the
	// client did not declare one, and part lengths are then not signed.
	PartSize int64
}

// NewPlan checks a declared part size against size and S3's limits. partSize 0 means "not declared".
func NewPlan(size, partSize int64) (Plan, error) {
	switch {
	case size < 0 || size > MaxObjectSize:
		return Plan{}, fmt.Errorf("size %d is not in 0..%d", size, int64(MaxObjectSize))
	case partSize == 0:
	case partSize < 0 || partSize > MaxPartSize:
		return Plan{}, fmt.Errorf("part_size %d is not in %d..%d", partSize, MinPartSize, int64(MaxPartSize))
	case partSize < MinPartSize && partSize < size:
		return Plan{}, fmt.Errorf("part_size %d is below S3's minimum of %d bytes for every part but the last", partSize, MinPartSize)
	case ceilDiv(size, partSize) > MaxParts:
		return Plan{}, fmt.Errorf("part_size %d cuts %d bytes into more than %d parts", partSize, size, MaxParts)
	}
	return Plan{Size: size, PartSize: partSize}, nil
}

// Parts is the highest part number the plan allows: with a part size, the number of parts it
// takes; without, the most parts of at least MinPartSize bytes (every part but the last) that Size
// allows. It is at least 1 and at most MaxParts.
func (p Plan) Parts() int32 {
	per := p.PartSize
	if per == 0 {
		per = MinPartSize
	}
	return int32(min(max(ceilDiv(p.Size, per), 1), MaxParts))
}

// PartLength is the length to sign for part n, or -1 when the plan has no part size.
func (p Plan) PartLength(n int32) int64 {
	if p.PartSize == 0 {
		return -1
	}
	if last := p.Parts(); n == last {
		return p.Size - int64(last-1)*p.PartSize
	}
	return p.PartSize
}

// CheckPartNumbers checks nums with the package's CheckPartNumbers and refuses numbers beyond the
// plan's Parts.
func (p Plan) CheckPartNumbers(nums []int32, maxCount int) error {
	if err := CheckPartNumbers(nums, maxCount); err != nil {
		return err
	}
	last := p.Parts()
	for _, n := range nums {
		if n > last {
			return partsErrorf("part number %d is beyond the %d part(s) that %d bytes take", n, last, p.Size)
		}
	}
	return nil
}

func ceilDiv(a, b int64) int64 {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}

// Parts lists every part S3 holds for an upload, following the pages (at most MaxParts parts,
// so a store whose markers do not advance cannot loop forever).
func (s *Service) Parts(ctx context.Context, bucket, key, uploadID string) ([]Part, error) {
	var parts []Part
	in := &s3.ListPartsInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: aws.String(uploadID)}
	for page := 0; page <= MaxParts; page++ {
		cctx, cancel := s.callContext(ctx)
		out, err := s.s3.ListParts(cctx, in)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("list parts of upload %s of %q: %w", uploadID, key, err)
		}
		for _, p := range out.Parts {
			parts = append(parts, Part{Number: aws.ToInt32(p.PartNumber), ETag: aws.ToString(p.ETag), Size: aws.ToInt64(p.Size), LastModified: p.LastModified})
		}
		next := aws.ToString(out.NextPartNumberMarker)
		if next == "" && len(out.Parts) > 0 {
			// A store that answers a truncated page without a marker: the page's last part is the
			// marker S3 would have given.
			next = strconv.Itoa(int(aws.ToInt32(out.Parts[len(out.Parts)-1].PartNumber)))
		}
		if !aws.ToBool(out.IsTruncated) {
			return parts, nil
		}
		if next == "" || next == aws.ToString(in.PartNumberMarker) || len(parts) > MaxParts {
			return nil, fmt.Errorf("list parts of upload %s of %q: truncated page without a new marker (after part %q)", uploadID, key, next)
		}
		in.PartNumberMarker = aws.String(next)
	}
	return nil, fmt.Errorf("list parts of upload %s of %q: more than %d pages", uploadID, key, MaxParts)
}

func unquote(etag string) string { return strings.Trim(etag, `"`) }
