package pipeline

import (
	"errors"
	"fmt"
)

// Dependencies whose outages the adapters report (the Dependency of an [UnavailableError]).
const (
	// DependencyPostgres is the database (internal/store).
	DependencyPostgres = "postgres"
	// DependencyS3 is the object store (internal/objstore).
	DependencyS3 = "s3"
)

// UnavailableError is an outage of one dependency: it matches [ErrUnavailable]
// (errors.Is) and says which dependency failed, so that the consumer checks
// that one to learn when it is back. Adapters build it with [Unavailable].
type UnavailableError struct {
	// Dependency names what is down: [DependencyPostgres], [DependencyS3]...
	Dependency string
	// Err is the failure, with what was being done.
	Err error
}

// Unavailable wraps err as an outage of dependency.
func Unavailable(dependency string, err error) error {
	return &UnavailableError{Dependency: dependency, Err: err}
}

// Error implements error.
func (e *UnavailableError) Error() string {
	return fmt.Sprintf("%v (%s unavailable)", e.Err, e.Dependency)
}

// Unwrap returns the failure.
func (e *UnavailableError) Unwrap() error { return e.Err }

// Is reports that an UnavailableError is an [ErrUnavailable].
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// UnavailableDependency returns the dependency named by the outage err reports, "" when err is not
// an outage or does not say which dependency failed (a bare [ErrUnavailable]).
func UnavailableDependency(err error) string {
	var u *UnavailableError
	if errors.As(err, &u) {
		return u.Dependency
	}
	return ""
}
