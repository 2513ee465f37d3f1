package outbox

import "time"

// SetIdleCheck shortens the Listener's checks of a silent connection (listenIdleCheck,
// listenPingTimeout); call it before Run.
func (l *Listener) SetIdleCheck(idle, ping time.Duration) { l.idle, l.ping = idle, ping }
