package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gosrc.io/xmpp/stanza"
)

// fakeSM is the stream management (XEP-0198) side of fake servers, shared
// by the connections of one test: the server's counters and queue live
// here, so that a later connection can resume the binding.
type fakeSM struct {
	mu       sync.Mutex
	id       string
	max      int // <enabled max/>, 0: none
	cur      *fakeServer
	in       uint32   // client stanzas received (the server's h)
	sent     []string // stanzas for the client since <enabled/>, all of them
	acked    uint32   // the client's last <a h/>
	got      []string // ids of the client stanzas received, in order
	requests int      // <r/> received
	resumes  int      // <resume/> received
	// loseNext: the next client stanzas are lost (not counted, not
	// handled), as if the network ate them.
	loseNext int
	// noAck: <r/> is never answered.
	noAck bool
	// ackBias is added to the h of the next <a/> (a hostile server).
	ackBias uint32
	// refuse, when set, is the condition of a <failed/> to <resume/>.
	refuse string
}

func (m *fakeSM) enable(fs *fakeServer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cur, m.in, m.sent, m.acked = fs, 0, nil, 0
	max := ""
	if m.max > 0 {
		max = " max='" + strconv.Itoa(m.max) + "'"
	}
	fs.send("<enabled xmlns='urn:xmpp:sm:3' id='" + m.id + "' resume='true'" + max + "/>")
}

// resume answers <resume/>: resumed (and resends what the client has not
// received), or failed when refuse is set.
func (m *fakeSM) resume(fs *fakeServer, el *rawEl) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.resumes++
	if m.refuse != "" || el.attr("previd") != m.id {
		fs.send("<failed xmlns='urn:xmpp:sm:3'><" + m.refuse + " xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>")
		return false
	}
	h, _ := strconv.ParseUint(el.attr("h"), 10, 32)
	if int(h) > len(m.sent) {
		fs.send("<failed xmlns='urn:xmpp:sm:3'><unexpected-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>")
		return false
	}
	m.cur = fs
	fs.send("<resumed xmlns='urn:xmpp:sm:3' previd='" + m.id + "' h='" + strconv.FormatUint(uint64(m.in), 10) + "'/>")
	for _, st := range m.sent[h:] {
		fs.send(st)
	}
	return true
}

// handle counts the client's stanzas and answers <r/>; it reports true
// for what the stanza handler must not see.
func (m *fakeSM) handle(fs *fakeServer, el *rawEl) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch el.XMLName.Local {
	case "r":
		m.requests++
		if !m.noAck {
			fs.send("<a xmlns='urn:xmpp:sm:3' h='" + strconv.FormatUint(uint64(m.in+m.ackBias), 10) + "'/>")
			m.ackBias = 0
		}
		return true
	case "a":
		h, _ := strconv.ParseUint(el.attr("h"), 10, 32)
		m.acked = uint32(h)
		return true
	case "message", "presence", "iq":
		if m.loseNext > 0 {
			m.loseNext--
			return true
		}
		m.in++
		m.got = append(m.got, el.XMLName.Local+":"+el.attr("id"))
	}
	return false
}

// toClient sends a stanza to the client (or holds it: when hold, it is
// only queued, as a server does while the client is away).
func (m *fakeSM) toClient(st string, hold bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent = append(m.sent, st)
	if !hold {
		m.cur.send(st)
	}
}

// cut closes the current connection abruptly (the client reads an EOF).
func (m *fakeSM) cut() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cur.conn.Close()
}

func (m *fakeSM) snapshot() (in uint32, got []string, requests, resumes int, acked uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.in, append([]string(nil), m.got...), m.requests, m.resumes, m.acked
}

// answerPings answers the client's iq gets (the catch-up ping among
// them) with a result.
func answerPings(fs *fakeServer, el *rawEl) {
	if el.XMLName.Local == "iq" && el.attr("type") == "get" {
		from := ""
		if to := el.attr("to"); to != "" {
			from = " from='" + to + "'"
		}
		fs.sm.toClient("<iq type='result' id='"+el.attr("id")+"'"+from+"/>", false)
	}
}

// smFixture is a session against fake servers sharing one fakeSM, with
// its handlers recorded.
type smFixture struct {
	*Session
	sm                          *fakeSM
	states                      stateRecorder
	refuseDial                  atomic.Bool
	connected, resumed, connect atomic.Int32
	mu                          sync.Mutex
	messages                    []string
	disconnects                 []error
}

func newSMFixture(t *testing.T, sm *fakeSM, onStanza func(*fakeServer, *rawEl), cfg func(*Config)) *smFixture {
	t.Helper()
	f := &smFixture{sm: sm}
	mk := func() *fakeServer {
		if f.refuseDial.Load() {
			return nil
		}
		return &fakeServer{mechanisms: []string{"PLAIN"}, password: "fake-pw", sm: sm, onStanza: onStanza}
	}
	s, _ := fakeSession(t, mk, Handlers{
		Connecting:   func(context.Context) error { f.connect.Add(1); return nil },
		Connected:    func(context.Context, string) { f.connected.Add(1) },
		Resumed:      func(string) { f.resumed.Add(1) },
		StateChanged: f.states.record,
		Disconnected: func(err error) {
			f.mu.Lock()
			f.disconnects = append(f.disconnects, err)
			f.mu.Unlock()
		},
	})
	if cfg != nil {
		cfg(&s.cfg.Config)
	}
	s.h.Message = func(m *stanza.Message) {
		f.mu.Lock()
		f.messages = append(f.messages, m.Id)
		f.mu.Unlock()
	}
	f.Session = s
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	eventually(t, 5*time.Second, "Connected", func() bool { return f.connected.Load() == 1 })
	return f
}

func (f *smFixture) received() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.messages...)
}

func (f *smFixture) disconnections() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.disconnects...)
}

// smCounters reads the client's counters.
func (f *smFixture) smCounters(t *testing.T) (in, out, acked uint32, queued int) {
	t.Helper()
	c := f.current()
	if c == nil {
		t.Fatal("no connection")
	}
	b := c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sm == nil {
		t.Fatal("stream management not enabled")
	}
	return b.sm.in, b.sm.out, b.sm.acked, len(b.sm.queue)
}

func message(id string) string {
	return "<message xmlns='jabber:client' id='" + id + "' from='bob@localhost/x' type='chat'><body>" + id + "</body></message>"
}

// TestFakeSMCounting: both directions are counted and acknowledged; an
// <r/> goes with stanzas, and the queue empties when acknowledged.
func TestFakeSMCounting(t *testing.T) {
	sm := &fakeSM{id: "sm-1", max: 60}
	f := newSMFixture(t, sm, answerPings, nil)
	if info, _ := f.ConnInfo(); !info.StreamManagement || !info.Resumable {
		t.Fatalf("ConnInfo %+v: stream management not enabled", info)
	}
	for i := range 3 {
		sm.toClient(message(fmt.Sprintf("s%d", i)), false)
	}
	eventually(t, 5*time.Second, "3 messages", func() bool { return len(f.received()) == 3 })
	sm.mu.Lock()
	sm.cur.send("<r xmlns='urn:xmpp:sm:3'/>")
	sm.mu.Unlock()
	eventually(t, 5*time.Second, "the client's <a h='3'/>", func() bool { _, _, _, _, a := sm.snapshot(); return a == 3 })
	ctx := context.Background()
	for i := range 5 {
		if err := f.SendRaw(ctx, "<message to='bob@localhost' id='m"+strconv.Itoa(i)+"'><body>x</body></message>"); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "every stanza acknowledged", func() bool {
		_, out, acked, queued := f.smCounters(t)
		return out == acked && queued == 0
	})
	in, out, _, _ := f.smCounters(t)
	srvIn, got, requests, _, _ := sm.snapshot()
	// The initial presence and the five messages.
	if in != 3 || out != 6 || srvIn != 6 || len(got) != 6 {
		t.Errorf("client in %d out %d, server in %d got %v; want 3, 6, 6", in, out, srvIn, got)
	}
	if requests < 1 || requests > 6 {
		t.Errorf("%d <r/> for 6 stanzas", requests)
	}
}

// TestFakeSMQueueBound: a server that never acknowledges makes the 501st
// stanza wait; an acknowledgement frees room.
func TestFakeSMQueueBound(t *testing.T) {
	sm := &fakeSM{id: "sm-2", noAck: true}
	f := newSMFixture(t, sm, nil, func(c *Config) { c.PingTimeout = time.Hour })
	ctx := context.Background()
	for i := 1; i < maxUnackedStanzas; i++ { // the presence is the first
		if err := f.SendRaw(ctx, "<message to='bob@localhost' id='q"+strconv.Itoa(i)+"'/>"); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, _, queued := f.smCounters(t); queued != maxUnackedStanzas {
		t.Fatalf("%d queued, want %d", queued, maxUnackedStanzas)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err := f.SendRaw(short, "<message to='bob@localhost' id='over'/>")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a stanza beyond the bound: %v, want it to wait (deadline)", err)
	}
	done := make(chan error, 1)
	go func() { done <- f.SendRaw(ctx, "<message to='bob@localhost' id='next'/>") }()
	sm.mu.Lock()
	sm.cur.send("<a xmlns='urn:xmpp:sm:3' h='10'/>")
	sm.mu.Unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an acknowledgement did not free room")
	}
	if _, out, acked, queued := f.smCounters(t); queued != maxUnackedStanzas-9 || acked != 10 || out != maxUnackedStanzas+1 {
		t.Errorf("out %d acked %d queued %d", out, acked, queued)
	}
	// One <r/> with the first stanza, none while it was unanswered, the
	// next one right after the acknowledgement (stanzas remain).
	eventually(t, 5*time.Second, "the second <r/>", func() bool { _, _, r, _, _ := sm.snapshot(); return r == 2 })
	time.Sleep(100 * time.Millisecond)
	if _, _, r, _, _ := sm.snapshot(); r != 2 {
		t.Errorf("%d <r/>, want 2", r)
	}
}

// TestFakeSMHostileAck: an acknowledgement of stanzas never sent ends the
// connection with a stream end (no resumption), and a fresh login
// follows.
func TestFakeSMHostileAck(t *testing.T) {
	sm := &fakeSM{id: "sm-3", ackBias: 7} // on the <r/> sent with the initial presence
	f := newSMFixture(t, sm, answerPings, nil)
	eventually(t, 10*time.Second, "a fresh login", func() bool { return f.connected.Load() == 2 })
	ds := f.disconnections()
	if len(ds) != 1 || !strings.Contains(ds[0].Error(), "handled-count-too-high") || f.resumed.Load() != 0 {
		t.Errorf("disconnections %v, resumed %d", ds, f.resumed.Load())
	}
	if _, _, _, resumes, _ := sm.snapshot(); resumes != 0 {
		t.Errorf("%d resumptions tried after a protocol violation", resumes)
	}
}

// TestFakeSMResume: after a cut, the binding is resumed: the stanzas the
// server lost are resent in order, the ones it held are received once,
// an IQ in flight is answered, and no disconnection is reported.
func TestFakeSMResume(t *testing.T) {
	sm := &fakeSM{id: "sm-4", max: 60}
	f := newSMFixture(t, sm, answerPings, nil)
	jid := f.JID()
	ctx := context.Background()
	for _, id := range []string{"m1", "m2"} {
		if err := f.SendRaw(ctx, "<message to='bob@localhost' id='"+id+"'/>"); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "m1, m2 acknowledged", func() bool { _, out, acked, _ := f.smCounters(t); return out == acked })
	sm.toClient(message("s1"), false)
	sm.toClient(message("s2"), false)
	eventually(t, 5*time.Second, "s1, s2", func() bool { return len(f.received()) == 2 })
	// m3, m4 and an IQ never reach the server; s3 is held by it.
	sm.mu.Lock()
	sm.loseNext = 3
	sm.mu.Unlock()
	for _, id := range []string{"m3", "m4"} {
		if err := f.SendRaw(ctx, "<message to='bob@localhost' id='"+id+"'/>"); err != nil {
			t.Fatal(err)
		}
	}
	iq := make(chan error, 1)
	go func() {
		ictx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, err := f.SendIQRaw(ictx, "", "get", "<q xmlns='urn:example:inflight'/>")
		iq <- err
	}()
	eventually(t, 5*time.Second, "the IQ sent", func() bool { _, out, _, _ := f.smCounters(t); return out == 6 })
	// Written by the client: wait until the server read (and lost) them.
	eventually(t, 5*time.Second, "the three stanzas lost", func() bool {
		sm.mu.Lock()
		defer sm.mu.Unlock()
		return sm.loseNext == 0
	})
	sm.toClient(message("s3"), true)
	sm.cut()
	eventually(t, 10*time.Second, "the resumption", func() bool { return f.resumed.Load() == 1 })
	if err := <-iq; err != nil {
		t.Errorf("the IQ in flight: %v", err)
	}
	if got := strings.Join(f.received(), ","); got != "s1,s2,s3" {
		t.Errorf("received %s, want s1,s2,s3", got)
	}
	_, got, _, resumes, _ := sm.snapshot()
	var msgs []string
	for _, g := range got {
		if strings.HasPrefix(g, "message:") {
			msgs = append(msgs, strings.TrimPrefix(g, "message:"))
		}
	}
	if strings.Join(msgs, ",") != "m1,m2,m3,m4" || resumes != 1 {
		t.Errorf("the server got %v (%d resumptions), want m1..m4 once each", got, resumes)
	}
	if f.connected.Load() != 1 || len(f.disconnections()) != 0 || f.connect.Load() != 1 || f.JID() != jid {
		t.Errorf("connected %d, disconnected %v, connecting hooks %d, JID %s", f.connected.Load(), f.disconnections(), f.connect.Load(), f.JID())
	}
	if info, _ := f.ConnInfo(); !info.Resumed || info.JID != jid {
		t.Errorf("ConnInfo %+v", info)
	}
}

// TestFakeSMResumeLostAnswer: the server received a get (it acknowledged
// it) but its answer was lost with the connection, and is not among what
// it resends on resumption (ejabberd may route it to the connection being
// replaced): once resumed, the get is asked again and answered; a set in
// the same case is not sent twice.
func TestFakeSMResumeLostAnswer(t *testing.T) {
	sm := &fakeSM{id: "sm-lost", max: 60}
	var mu sync.Mutex
	seen := map[string]int{}
	f := newSMFixture(t, sm, func(fs *fakeServer, el *rawEl) {
		if el.XMLName.Local != "iq" {
			return
		}
		if !strings.Contains(el.Inner, "urn:example:lost") {
			answerPings(fs, el)
			return
		}
		mu.Lock()
		seen[el.attr("type")]++
		n := seen[el.attr("type")]
		mu.Unlock()
		if n > 1 {
			fs.sm.toClient("<iq type='result' id='"+el.attr("id")+"'/>", false)
		}
	}, nil)
	ctx := context.Background()
	results := make(chan error, 2)
	for _, typ := range []string{"get", "set"} {
		go func() {
			wait := 10 * time.Second
			if typ == "set" {
				wait = 2 * time.Second // never answered
			}
			ictx, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			_, err := f.SendIQRaw(ictx, "", typ, "<q xmlns='urn:example:lost'/>")
			results <- fmt.Errorf("%s: %w", typ, err)
		}()
	}
	eventually(t, 5*time.Second, "both requests received", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen["get"] == 1 && seen["set"] == 1
	})
	eventually(t, 5*time.Second, "both acknowledged", func() bool { _, out, acked, _ := f.smCounters(t); return out == acked })
	sm.cut()
	eventually(t, 10*time.Second, "the resumption", func() bool { return f.resumed.Load() == 1 })
	var getErr, setErr error
	for range 2 {
		err := <-results
		if strings.HasPrefix(err.Error(), "get") {
			getErr = errors.Unwrap(err)
		} else {
			setErr = errors.Unwrap(err)
		}
	}
	if getErr != nil {
		t.Errorf("the get whose answer was lost: %v, want answered once asked again", getErr)
	}
	if !errors.Is(setErr, context.DeadlineExceeded) {
		t.Errorf("the set whose answer was lost: %v, want no answer (never sent twice)", setErr)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["get"] != 2 || seen["set"] != 1 {
		t.Errorf("the server got the get %d times and the set %d times, want 2 and 1", seen["get"], seen["set"])
	}
}

// TestFakeSMResumeRefused: the server refuses the resumption: the waiting
// IQ fails, the disconnection is reported (ErrResumptionFailed), and the
// same stream binds afresh after the Connecting hook.
func TestFakeSMResumeRefused(t *testing.T) {
	sm := &fakeSM{id: "sm-5", max: 60}
	f := newSMFixture(t, sm, answerPings, nil)
	sm.mu.Lock()
	sm.loseNext = 1
	sm.mu.Unlock()
	iq := make(chan error, 1)
	go func() {
		_, err := f.SendIQRaw(context.Background(), "", "get", "<q xmlns='urn:example:lost'/>")
		iq <- err
	}()
	eventually(t, 5*time.Second, "the IQ sent", func() bool { _, out, _, _ := f.smCounters(t); return out == 2 })
	sm.mu.Lock()
	sm.refuse = "item-not-found"
	sm.mu.Unlock()
	sm.cut()
	eventually(t, 10*time.Second, "a fresh login", func() bool { return f.connected.Load() == 2 })
	select {
	case err := <-iq:
		if !errors.Is(err, ErrDisconnected) {
			t.Errorf("the waiting IQ: %v, want ErrDisconnected", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the waiting IQ never ended")
	}
	ds := f.disconnections()
	if len(ds) != 1 || !errors.Is(ds[0], ErrResumptionFailed) || !strings.Contains(ds[0].Error(), "item-not-found") {
		t.Errorf("disconnections %v, want one ErrResumptionFailed naming item-not-found", ds)
	}
	if f.resumed.Load() != 0 || f.connect.Load() != 2 {
		t.Errorf("resumed %d, connecting hooks %d; want 0, 2", f.resumed.Load(), f.connect.Load())
	}
	if _, _, _, resumes, _ := sm.snapshot(); resumes != 1 {
		t.Errorf("%d resumptions asked, want 1", resumes)
	}
}

// TestFakeSMWindowPassed: while the server cannot be reached, its window
// passes: the disconnection is reported then, and the next connection
// logs in afresh without asking for a resumption.
func TestFakeSMWindowPassed(t *testing.T) {
	sm := &fakeSM{id: "sm-6", max: 1}
	f := newSMFixture(t, sm, answerPings, nil)
	f.refuseDial.Store(true)
	sm.cut()
	eventually(t, 10*time.Second, "the window's end reported", func() bool { return len(f.disconnections()) == 1 })
	if err := f.disconnections()[0]; !errors.Is(err, ErrResumptionFailed) || !strings.Contains(err.Error(), "window") {
		t.Errorf("disconnection %v, want the window's end", err)
	}
	if f.State() != StateReconnecting {
		t.Errorf("state %s", f.State())
	}
	f.refuseDial.Store(false)
	eventually(t, 10*time.Second, "a fresh login", func() bool { return f.connected.Load() == 2 })
	if _, _, _, resumes, _ := sm.snapshot(); resumes != 0 || f.resumed.Load() != 0 {
		t.Errorf("%d resumptions asked after the window", resumes)
	}
}

// TestFakeSMHalfOpen: a server that stops answering is noticed by the
// <r/> sent with a stanza, within PingTimeout, with pings disabled.
func TestFakeSMHalfOpen(t *testing.T) {
	sm := &fakeSM{id: "sm-7", max: 60}
	f := newSMFixture(t, sm, answerPings, func(c *Config) { c.PingTimeout = 300 * time.Millisecond })
	rec := &f.states
	sm.mu.Lock()
	sm.noAck = true
	sm.mu.Unlock()
	if err := f.SendRaw(context.Background(), "<message to='bob@localhost' id='unanswered'/>"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the silence noticed", func() bool { return rec.count(StateReconnecting) == 1 })
	rec.mu.Lock()
	cause := rec.errs[slices.Index(rec.states, StateReconnecting)]
	rec.mu.Unlock()
	if !errors.Is(cause, ErrPingTimeout) {
		t.Errorf("cause %v, want ErrPingTimeout", cause)
	}
	sm.mu.Lock()
	sm.noAck = false
	sm.mu.Unlock()
	eventually(t, 10*time.Second, "the resumption", func() bool { return f.resumed.Load() == 1 })
	if _, got, _, _, _ := sm.snapshot(); strings.Count(strings.Join(got, ","), "message:unanswered") != 1 {
		t.Errorf("the server got %v, want the message once", got)
	}
}

func TestResumeRequestEndpoints(t *testing.T) {
	prev := Endpoint{Host: "xmpp.example.org", Port: 5222, Origin: OriginSRVStartTLS}
	for _, tt := range []struct {
		loc        string
		configured bool
		want       string
	}{
		{"", false, "xmpp.example.org:5222"},
		{"node2.example.org:5223", false, "node2.example.org:5223 xmpp.example.org:5222"},
		{"[2001:db8::1]:5222", false, "[2001:db8::1]:5222 xmpp.example.org:5222"},
		{"node3.example.org", false, "node3.example.org:5222 xmpp.example.org:5222"},
		{"bad host!:x", false, "xmpp.example.org:5222"},
		{"node2.example.org:70000", false, "xmpp.example.org:5222"},
		{"node2.example.org:5223", true, ""},
	} {
		cfg, err := resolve(Config{JID: "a@example.org", Password: "p"})
		if err != nil {
			t.Fatal(err)
		}
		if tt.configured {
			cfg.configured = &Endpoint{Host: "127.0.0.1", Port: 5222, Origin: OriginConfigured}
		}
		s := &Session{cfg: cfg}
		b := newBinding(s, "a@example.org/r", &smState{id: "x", location: tt.loc, window: time.Minute})
		b.endpoint = prev
		r := b.resumeRequest()
		var got []string
		for _, ep := range r.prefer {
			got = append(got, ep.Addr())
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("location %q (configured %v): prefer %v, want %s", tt.loc, tt.configured, got, tt.want)
		}
		b.finish()
		if b.resumeRequest() != nil {
			t.Error("an ended binding is resumable")
		}
	}
}

func TestCheckStanza(t *testing.T) {
	for _, tt := range []struct {
		in string
		ok bool
	}{
		{"<message to='a@b'><body>x</body></message>", true},
		{" <presence/>\n", true},
		{"<iq type='get' id='1'/>", true},
		{"<message xmlns='jabber:client'/>", true},
		{"<message/><message/>", false},
		{"<r xmlns='urn:xmpp:sm:3'/>", false},
		{"<message xmlns='urn:other'/>", false},
		{"<foo/>", false},
		{"text<message/>", false},
		{"", false},
		{"<message>", false},
	} {
		if err := checkStanza(tt.in); (err == nil) != tt.ok {
			t.Errorf("checkStanza(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

// TestFakePingTimeoutWithoutSM: without stream management the liveness
// check is a XEP-0199 ping; an unanswered one ends the connection
// (ErrPingTimeout), the disconnection is reported at once and a fresh
// login follows.
func TestFakePingTimeoutWithoutSM(t *testing.T) {
	var answer atomic.Bool
	mk := func() *fakeServer {
		return &fakeServer{mechanisms: []string{"PLAIN"}, password: "fake-pw", onStanza: func(fs *fakeServer, el *rawEl) {
			if el.XMLName.Local == "iq" && el.attr("type") == "get" && answer.Load() {
				fs.send("<iq type='result' id='" + el.attr("id") + "' from='" + el.attr("to") + "'/>")
			}
		}}
	}
	var rec stateRecorder
	var mu sync.Mutex
	var causes []error
	connected := make(chan struct{}, 4)
	s, _ := fakeSession(t, mk, Handlers{
		StateChanged: rec.record,
		Connected:    func(context.Context, string) { connected <- struct{}{} },
		Disconnected: func(err error) { mu.Lock(); causes = append(causes, err); mu.Unlock() },
	})
	s.cfg.PingInterval, s.cfg.PingTimeout = 100*time.Millisecond, 200*time.Millisecond
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Stop(context.Background()) }()
	<-connected
	if info, _ := s.ConnInfo(); info.StreamManagement {
		t.Fatalf("stream management enabled without the feature: %+v", info)
	}
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("no fresh login after the unanswered ping")
	}
	answer.Store(true)
	mu.Lock()
	defer mu.Unlock()
	if len(causes) == 0 || !errors.Is(causes[0], ErrPingTimeout) {
		t.Errorf("disconnections %v, want ErrPingTimeout first", causes)
	}
}
