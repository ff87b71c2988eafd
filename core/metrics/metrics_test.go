package metrics

import (
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// scrape returns the text exposition of r.
func scrape(t *testing.T, r *Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestDeclarationsRefused(t *testing.T) {
	r := NewRegistry()
	help := "Things counted by the test, one per call."
	for _, tc := range []struct {
		kind string
		o    Opts
	}{
		{"counter", Opts{Name: "cache_hits_total", Help: help}},             // outside backend_
		{"counter", Opts{Name: "backend_hits", Help: help}},                 // counter without _total
		{"gauge", Opts{Name: "backend_queue_total", Help: help}},            // _total on a gauge
		{"counter", Opts{Name: "backend_x_total", Help: ""}},                // no help
		{"counter", Opts{Name: "backend_x_total", Help: "backend_x_total"}}, // placeholder help
		{"counter", Opts{Name: "backend_x_total", Help: "Counter x"}},       // not a sentence
		{"counter", Opts{Name: "backend_x_total", Help: help, Labels: []Label{{Name: "profile", Max: 10}}}},
		{"counter", Opts{Name: "backend_x_total", Help: help, Labels: []Label{{Name: "node", Values: []string{"a"}}}}},
		{"counter", Opts{Name: "backend_x_total", Help: help, Labels: []Label{{Name: "kind"}}}},                                 // no bound
		{"counter", Opts{Name: "backend_x_total", Help: help, Labels: []Label{{Name: "kind", Max: 3, Values: []string{"a"}}}}},  // two bounds
		{"counter", Opts{Name: "backend_x_total", Help: help, Labels: []Label{{Name: "kind", Max: MaxLabelValues + 1}}}},        // too many
		{"counter", Opts{Name: "backend_x_total", Help: help, Labels: []Label{{Name: "kind", Values: []string{"a", Other}}}}},   // reserved value
		{"counter", Opts{Name: "backend_x_total", Help: help, Labels: []Label{{Name: "kind", Max: 2}, {Name: "kind", Max: 2}}}}, // twice
		{"histogram", Opts{Name: "backend_x_seconds", Help: help, Labels: []Label{{Name: "le", Max: 2}}}},
	} {
		var err error
		switch tc.kind {
		case "counter":
			_, err = r.Counter("test", tc.o)
		case "gauge":
			_, err = r.Gauge("test", tc.o)
		case "histogram":
			_, err = r.Histogram("test", tc.o)
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s %+v: err = %v, want ErrInvalid", tc.kind, tc.o, err)
		}
	}
	// A name is declared once, whoever asks.
	if _, err := r.Counter("test", Opts{Name: "backend_x_total", Help: help}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Counter("other", Opts{Name: "backend_x_total", Help: help}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "test") {
		t.Errorf("second declaration: %v", err)
	}
	if _, err := r.Counter("", Opts{Name: "backend_y_total", Help: help}); err == nil {
		t.Error("declaration without owner accepted")
	}
}

// TestBounds: values outside the bound become "other", fixed values exist
// at zero from the start, learnt values stop at Max, and the bound is the
// product of the labels' bounds.
func TestBounds(t *testing.T) {
	r := NewRegistry()
	c, err := r.Counter("test", Opts{Name: "backend_answers_total", Help: "Answers given, by outcome and type.",
		Labels: []Label{{Name: "outcome", Values: []string{"hit", "miss"}}, {Name: "type", Max: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := r.Histogram("test", Opts{Name: "backend_wait_seconds", Help: "Waiting time of the test, by stage.",
		Labels: []Label{{Name: "stage", Values: []string{"a", "b"}}}, Buckets: FastBuckets})
	if err != nil {
		t.Fatal(err)
	}
	out := scrape(t, r)
	if !strings.Contains(out, `backend_wait_seconds_count{stage="a"} 0`) || !strings.Contains(out, `backend_wait_seconds_count{stage="b"} 0`) {
		t.Errorf("fixed-value series not pre-created:\n%s", out)
	}
	if strings.Contains(out, "backend_answers_total{") {
		t.Errorf("series of a learnt label pre-created:\n%s", out)
	}
	vals := []string{"hit", "blog"}
	c.With(vals...).Inc()
	c.With("miss", "blog").Inc()
	c.With("bogus", "events").Inc()
	c.With("hit", "third-type").Add(2)
	c.With("hit", "fourth").Inc()
	h.With("c").Observe(0.5)
	if vals[0] != "hit" || vals[1] != "blog" {
		t.Errorf("caller's values modified: %v", vals)
	}
	out = scrape(t, r)
	for _, want := range []string{
		`backend_answers_total{outcome="hit",type="blog"} 1`,
		`backend_answers_total{outcome="miss",type="blog"} 1`,
		`backend_answers_total{outcome="other",type="events"} 1`,
		`backend_answers_total{outcome="hit",type="other"} 3`,
		`backend_wait_seconds_count{stage="other"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}
	fams := r.Families()
	if len(fams) != 2 || fams[0].Name != "backend_answers_total" || fams[0].Bound() != 3*3 || fams[1].Bound() != 3 || fams[0].Owner != "test" {
		t.Errorf("families = %+v", fams)
	}
}

func TestFuncFamilies(t *testing.T) {
	r := NewRegistry()
	n := 0.0
	if err := r.GaugeFunc("test", Opts{Name: "backend_queue_depth", Help: "Items waiting in the test queue, by queue.",
		Labels: []Label{{Name: "queue", Max: 1}}}, func() []Sample {
		n++
		return []Sample{{Values: []string{"first"}, Value: n}, {Values: []string{"second"}, Value: 10}, {Values: []string{"third"}, Value: 5}}
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.CounterFunc("test", Opts{Name: "backend_restarts_total", Help: "Restarts counted elsewhere for the test."}, func() []Sample {
		return []Sample{{Value: 7}}
	}); err != nil {
		t.Fatal(err)
	}
	out := scrape(t, r)
	// Values folded into "other" add up.
	for _, want := range []string{`backend_queue_depth{queue="first"} 1`, `backend_queue_depth{queue="other"} 15`,
		"# TYPE backend_restarts_total counter", "backend_restarts_total 7"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}
	if err := r.Runtime(); err != nil {
		t.Fatal(err)
	}
	if out := scrape(t, r); !strings.Contains(out, "go_goroutines") {
		t.Error("no runtime metrics")
	}
}

func TestWrongLabelCountPanics(t *testing.T) {
	r := NewRegistry()
	c, err := r.Counter("test", Opts{Name: "backend_z_total", Help: "Something counted by kind.", Labels: []Label{{Name: "kind", Max: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if fmt.Sprint(recover()) == "<nil>" {
			t.Error("no panic")
		}
	}()
	c.With("a", "b")
}
