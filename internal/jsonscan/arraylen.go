package jsonscan

import "bytes"

// ArrayLen counts the elements of data, valid JSON (as encoding/json has found it), when it is an
// array, stopping at limit (it returns at most limit); any other value counts 0. It allocates
// nothing, and reads no further than the limit's element: the callers (the records of an S3
// notification, the parts of a multipart completion) refuse a list longer than their limit before
// allocating for it.
func ArrayLen(data []byte, limit int) int {
	data = bytes.TrimLeft(data, " \t\r\n")
	if len(data) == 0 || data[0] != '[' {
		return 0
	}
	commas, depth, inString, elements := 0, 0, false, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inString {
			switch c {
			case '\\':
				i++ // the escaped byte
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '"':
			inString = true
		case '[', '{':
			depth++
		case ']', '}':
			depth--
		case ',':
			if depth == 1 {
				if commas++; commas+1 >= limit {
					return limit
				}
			}
		}
		if depth == 0 {
			break // the array's closing bracket
		}
		if i > 0 {
			elements = true // a byte of an element (or a comma between two)
		}
	}
	if !elements {
		return 0
	}
	return min(commas+1, limit)
}
