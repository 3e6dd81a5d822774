package daemon

import (
	"net"
	"net/http"
	"sync"

	"k8s.io/klog/v2"
)

// cappedListener keeps at most max connections open. Unlike a listener that stops accepting at its cap
// (netutil.LimitListener), which lets a few hundred idle connections lock out the kubelet's probes until
// they time out, it makes room for a new connection by closing the oldest one that is not serving a
// request (new or idle, as http.Server's ConnState reports). When every connection is busy, the new one
// is closed.
type cappedListener struct {
	net.Listener
	max int

	mu    sync.Mutex
	conns []*cappedConn // open connections, oldest first
}

type cappedConn struct {
	net.Conn
	l    *cappedListener
	busy bool // serving a request
	once sync.Once
}

func newCappedListener(l net.Listener, max int) *cappedListener {
	return &cappedListener{Listener: l, max: max}
}

func (l *cappedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cc := &cappedConn{Conn: c, l: l}
		l.mu.Lock()
		var evict *cappedConn
		if len(l.conns) >= l.max {
			for _, o := range l.conns {
				if !o.busy {
					evict = o
					break
				}
			}
			if evict == nil {
				l.mu.Unlock()
				klog.V(2).InfoS("Metrics server at its connection cap with every connection busy; refusing one", "max", l.max)
				_ = c.Close()
				continue
			}
			l.removeLocked(evict)
		}
		l.conns = append(l.conns, cc)
		l.mu.Unlock()
		if evict != nil {
			klog.V(4).InfoS("Metrics server at its connection cap; closing the oldest idle connection", "max", l.max,
				"remote", evict.RemoteAddr())
			_ = evict.Conn.Close()
		}
		return cc, nil
	}
}

// track follows http.Server's ConnState: only a connection serving a request is kept at the cap.
func (l *cappedListener) track(c net.Conn, state http.ConnState) {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok { // TLS
		c = tc.NetConn()
	}
	cc, ok := c.(*cappedConn)
	if !ok {
		return
	}
	switch state {
	case http.StateActive:
		l.mu.Lock()
		cc.busy = true
		l.mu.Unlock()
	case http.StateIdle:
		l.mu.Lock()
		cc.busy = false
		l.mu.Unlock()
	case http.StateClosed, http.StateHijacked:
		cc.forget()
	}
}

// open is the number of connections open now.
func (l *cappedListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// busy is the number of connections serving a request now.
func (l *cappedListener) busy() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.conns {
		if c.busy {
			n++
		}
	}
	return n
}

func (l *cappedListener) removeLocked(cc *cappedConn) {
	for i, o := range l.conns {
		if o == cc {
			l.conns = append(l.conns[:i], l.conns[i+1:]...)
			return
		}
	}
}

func (c *cappedConn) forget() {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.removeLocked(c)
		c.l.mu.Unlock()
	})
}

func (c *cappedConn) Close() error {
	c.forget()
	return c.Conn.Close()
}
