package queue

import (
	"encoding/base64"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/intakehq/intake/internal/jsonstr"
)

// scanReceive is Lean's fast decoder of a ReceiveMessage answer: it reads
// {"Messages":[{...},...]} in one pass over body, without reflection, when the answer has the
// plain form SQS and its emulators send, and gives what the SDK's protocol decoder gives for it.
// ok is false whenever it cannot be sure of that, and Lean then decodes with the SDK: no message
// (an empty or missing list); any member it does not read, at the top or in a message (a future
// field of the API), or a member given twice; a name holding an escape; a value of another JSON
// type, or null; an empty object or map; a message attribute with list values; a string that
// jsonstr.Cut leaves to others (an escaped surrogate, invalid UTF-8, a control character);
// base64 it cannot decode strictly; anything after the closing brace. FuzzScanAnswers holds it to
// the SDK's decoder.
//
// Why: the SDK's schema-driven decoder was 6% of the consumer's CPU (the largest piece of the
// SQS calls left after Lean's fourth round), for an answer of known shape.
func scanReceive(body []byte) (msgs []types.Message, ok bool) {
	s := answerScanner{b: body}
	if !s.eat('{') || !s.name("Messages") || !s.eat(':') || !s.eat('[') {
		return nil, false
	}
	msgs = make([]types.Message, 0, 10) // a receive asks for ten at most
	for {
		msgs = append(msgs, types.Message{})
		if !s.message(&msgs[len(msgs)-1]) {
			return nil, false
		}
		if s.eat(',') {
			continue
		}
		if !s.eat(']') || !s.eat('}') {
			return nil, false
		}
		s.space()
		return msgs, s.i == len(s.b)
	}
}

// scanDeleteBatch is scanReceive for a DeleteMessageBatch answer: {"Successful":[{"Id":...},...]}
// with "Failed":[] or without it, read into what the SDK's decoder gives (an empty list is an
// empty slice, not nil). An answer with failed entries, or any member, type or form
// scanReceive would leave, is left to the SDK. FuzzScanAnswers holds it to the SDK's decoder.
func scanDeleteBatch(body []byte) (out sqs.DeleteMessageBatchOutput, ok bool) {
	s := answerScanner{b: body}
	if !s.eat('{') {
		return out, false
	}
	for {
		name, ok := s.raw()
		if !ok || !s.eat(':') || !s.eat('[') {
			return out, false
		}
		switch string(name) {
		case "Successful":
			if out.Successful != nil {
				return out, false
			}
			out.Successful = make([]types.DeleteMessageBatchResultEntry, 0, 10) // ten at most
			for !s.eat(']') {
				if len(out.Successful) > 0 && !s.eat(',') {
					return out, false
				}
				if !s.eat('{') || !s.name("Id") || !s.eat(':') {
					return out, false
				}
				id, ok := s.str()
				if !ok || !s.eat('}') {
					return out, false
				}
				out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: &id})
			}
		case "Failed":
			if out.Failed != nil || !s.eat(']') {
				return out, false
			}
			out.Failed = []types.BatchResultErrorEntry{}
		default:
			return out, false
		}
		if s.eat(',') {
			continue
		}
		if !s.eat('}') {
			return out, false
		}
		s.space()
		return out, s.i == len(s.b)
	}
}

// answerScanner reads the JSON of a ReceiveMessage or DeleteMessageBatch answer from b at i.
type answerScanner struct {
	b   []byte
	i   int
	buf []byte // an escaped string's value, reused
}

func (s *answerScanner) space() { s.i = jsonstr.Space(s.b, s.i) }

// eat skips white space and consumes c if it comes next.
func (s *answerScanner) eat(c byte) (ok bool) {
	s.i, ok = jsonstr.Next(s.b, s.i, c)
	return ok
}

// raw reads a string without escapes (a member name or a map key); the bytes are b's.
func (s *answerScanner) raw() ([]byte, bool) {
	s.space()
	v, n, ok := jsonstr.Cut(nil, s.b[s.i:])
	if !ok || n != len(v)+2 { // an escape makes the value shorter than its spelling
		return nil, false
	}
	s.i += n
	return v, true
}

// name reads a member name and reports whether it is want.
func (s *answerScanner) name(want string) bool {
	v, ok := s.raw()
	return ok && string(v) == want
}

// str reads a string value, escapes included, into a string of its own.
func (s *answerScanner) str() (string, bool) {
	s.space()
	v, n, ok := jsonstr.Cut(s.buf[:0], s.b[s.i:])
	if !ok {
		return "", false
	}
	s.i += n
	if n != len(v)+2 {
		s.buf = v[:0] // v was written into buf (perhaps grown): keep it for the next one
	}
	return string(v), true
}

// messageMembers are the members of a message that scanReceive reads: the five strings (in the
// order of message's fields), then the two maps. A member's index is its bit in the set of those
// already read.
var messageMembers = [...]string{
	"MessageId", "ReceiptHandle", "MD5OfBody", "Body", "MD5OfMessageAttributes", "Attributes", "MessageAttributes",
}

// memberIndex is name's index in messageMembers, or -1.
func memberIndex(name []byte) int {
	for k, m := range messageMembers {
		if string(name) == m {
			return k
		}
	}
	return -1
}

// message reads one message object.
func (s *answerScanner) message(m *types.Message) bool {
	if !s.eat('{') {
		return false
	}
	fields := [...]**string{&m.MessageId, &m.ReceiptHandle, &m.MD5OfBody, &m.Body, &m.MD5OfMessageAttributes}
	strs := new([len(fields)]string) // the message's string members, in one allocation
	var seen int
	for {
		name, ok := s.raw()
		if !ok || !s.eat(':') {
			return false
		}
		k := memberIndex(name)
		if k < 0 || seen&(1<<k) != 0 {
			return false
		}
		seen |= 1 << k
		switch {
		case k < len(fields):
			*fields[k] = &strs[k]
			if strs[k], ok = s.str(); !ok {
				return false
			}
		case messageMembers[k] == "Attributes":
			if m.Attributes, ok = s.attributes(); !ok {
				return false
			}
		default:
			if m.MessageAttributes, ok = s.messageAttributes(); !ok {
				return false
			}
		}
		if s.eat(',') {
			continue
		}
		return s.eat('}')
	}
}

// attributes reads a message's system attributes: a non-empty map of strings.
func (s *answerScanner) attributes() (map[string]string, bool) {
	return readMap(s, 4, attributeName, s.str)
}

// attributeName is k as a string, without allocating for the system attributes the consumer asks
// for.
func attributeName(k []byte) string {
	switch string(k) {
	case "ApproximateReceiveCount":
		return "ApproximateReceiveCount"
	case "SentTimestamp":
		return "SentTimestamp"
	case "ApproximateFirstReceiveTimestamp":
		return "ApproximateFirstReceiveTimestamp"
	case "SenderId":
		return "SenderId"
	}
	return string(k)
}

// messageAttributes reads a message's own attributes: a non-empty map of {DataType, StringValue or
// BinaryValue} objects.
func (s *answerScanner) messageAttributes() (map[string]types.MessageAttributeValue, bool) {
	return readMap(s, 2, func(k []byte) string { return string(k) }, s.attributeValue)
}

// readMap reads a non-empty object of distinct keys without escapes (named by name) into a map of
// size entries at first, each value read by value.
func readMap[V any](s *answerScanner, size int, name func([]byte) string, value func() (V, bool)) (map[string]V, bool) {
	if !s.eat('{') {
		return nil, false
	}
	m := make(map[string]V, size)
	for {
		k, ok := s.raw()
		if !ok || !s.eat(':') {
			return nil, false
		}
		key := name(k)
		if _, dup := m[key]; dup {
			return nil, false
		}
		v, ok := value()
		if !ok {
			return nil, false
		}
		m[key] = v
		if s.eat(',') {
			continue
		}
		return m, s.eat('}')
	}
}

// attributeValue reads one message attribute: DataType, StringValue and BinaryValue (standard
// base64, padded), each at most once; anything else gives up.
func (s *answerScanner) attributeValue() (types.MessageAttributeValue, bool) {
	var v types.MessageAttributeValue
	if !s.eat('{') {
		return v, false
	}
	for {
		name, ok := s.raw()
		if !ok || !s.eat(':') {
			return v, false
		}
		switch string(name) {
		case "DataType", "StringValue":
			dst := &v.DataType
			if string(name) == "StringValue" {
				dst = &v.StringValue
			}
			if *dst != nil {
				return v, false
			}
			str, ok := s.str()
			if !ok {
				return v, false
			}
			*dst = &str
		case "BinaryValue":
			if v.BinaryValue != nil {
				return v, false
			}
			str, ok := s.str()
			if !ok {
				return v, false
			}
			b, err := base64.StdEncoding.Strict().DecodeString(str)
			if err != nil || len(b) == 0 {
				return v, false
			}
			v.BinaryValue = b
		default:
			return v, false
		}
		if s.eat(',') {
			continue
		}
		return v, s.eat('}')
	}
}
