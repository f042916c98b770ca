// Command grpcload is a small gRPC load generator for bench/peers.py (ghz is not available here).
//
// It sends one pre-serialized request message (a file of protobuf bytes, e.g. a ModelInferRequest
// written by Python) to one full method name, unary, with -c concurrent workers spread over
// -connections HTTP/2 connections, for -warmup seconds (not counted) and then -duration seconds,
// and prints one JSON object: requests, req/s, OK and each non-OK status code, latency percentiles.
// No generated stubs: a codec passes the bytes through both ways, so any unary method can be
// loaded. Every response must be non-empty (an empty one counts as the error "empty_response");
// with -expect-hex the first response must contain the given bytes, or grpcload exits 1 before
// the load.
//
//	grpcload -addr 127.0.0.1:8081 -method /inference.GRPCInferenceService/ModelInfer \
//	    -data request.bin -c 16 -connections 16 -warmup 3 -duration 10 [-expect-hex 0a0b...]
//
// Counting is like wrk's: a request counts in the measured window when it completes inside it,
// and its latency is the time from sending to the whole response. Requests still in flight when the
// window closes finish unmeasured. Exit code 0 when the load ran (errors are in the JSON), 1 when it
// could not (bad flags, unreadable file, failed first-response check), 2 for usage errors.
package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// rawCodec sends a []byte as the message and hands back the response's bytes: no protobuf work
// on the client, so the generator's CPU goes to gRPC itself.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
	}
	// A SliceBuffer's Free is a no-op: the one request buffer is shared, read-only, by all workers.
	return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	*b = data.Materialize()
	return nil
}

// Name is the content-subtype sent ("application/grpc+proto"): the bytes are protobuf.
func (rawCodec) Name() string { return "proto" }

type options struct {
	addr        string
	method      string
	dataFile    string
	concurrency int
	connections int
	warmup      time.Duration
	duration    time.Duration
	timeout     time.Duration
	expect      []byte
}

// sample is one completed call.
type sample struct {
	end     time.Time
	latency time.Duration
	code    string // "OK", a gRPC status code name, or "empty_response"
}

type result struct {
	Target          string             `json:"target"`
	Method          string             `json:"method"`
	RequestBytes    int                `json:"request_bytes"`
	ResponseBytes   int                `json:"first_response_bytes"`
	Concurrency     int                `json:"concurrency"`
	Connections     int                `json:"connections"`
	WarmupS         float64            `json:"warmup_s"`
	DurationS       float64            `json:"duration_s"`
	Requests        int                `json:"requests"`
	OK              int                `json:"ok"`
	RequestsPerS    float64            `json:"requests_per_s"`
	Codes           map[string]int     `json:"codes"`
	ErrorsTotal     int                `json:"errors_total"`
	FirstErrors     map[string]string  `json:"first_errors,omitempty"`
	LatencyMs       map[string]float64 `json:"latency_ms"`
	WarmupRequests  int                `json:"warmup_requests"`
	InFlightDropped int                `json:"in_flight_at_end"`
	ClientCPUS      float64            `json:"client_cpu_s"`
	ExpectChecked   bool               `json:"expect_checked"`
}

func parseFlags() (options, error) {
	var o options
	var warmup, duration, timeout float64
	var expectHex string
	flag.StringVar(&o.addr, "addr", "127.0.0.1:8081", "server host:port (plaintext)")
	flag.StringVar(&o.method, "method", "/inference.GRPCInferenceService/ModelInfer", "full method name")
	flag.StringVar(&o.dataFile, "data", "", "file with the serialized request message (required)")
	flag.IntVar(&o.concurrency, "c", 16, "concurrent workers, each with one call in flight")
	flag.IntVar(&o.connections, "connections", 0, "connections the workers share round-robin (0: one per worker)")
	flag.Float64Var(&warmup, "warmup", 0, "seconds of load before measuring (not counted)")
	flag.Float64Var(&duration, "duration", 10, "measured seconds")
	flag.Float64Var(&timeout, "timeout", 10, "deadline of each call, seconds")
	flag.StringVar(&expectHex, "expect-hex", "", "hex bytes the first response must contain")
	flag.Parse()
	if o.dataFile == "" || flag.NArg() > 0 {
		return o, errors.New("usage: grpcload -data FILE [-addr HOST:PORT] [-method /pkg.Service/Method] [-c N] " +
			"[-connections K] [-warmup S] [-duration S] [-timeout S] [-expect-hex HEX]")
	}
	if o.concurrency < 1 || o.connections < 0 || duration <= 0 || warmup < 0 || timeout <= 0 {
		return o, errors.New("-c must be ≥ 1, -connections ≥ 0, -duration and -timeout > 0, -warmup ≥ 0")
	}
	if o.connections == 0 || o.connections > o.concurrency {
		o.connections = o.concurrency
	}
	var err error
	if o.expect, err = hex.DecodeString(expectHex); err != nil {
		return o, fmt.Errorf("-expect-hex: %w", err)
	}
	o.warmup = time.Duration(warmup * float64(time.Second))
	o.duration = time.Duration(duration * float64(time.Second))
	o.timeout = time.Duration(timeout * float64(time.Second))
	return o, nil
}

func call(conn *grpc.ClientConn, o *options, request *[]byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	var response []byte
	err := conn.Invoke(ctx, o.method, request, &response)
	return response, err
}

func codeOf(response []byte, err error) string {
	if err != nil {
		return status.Code(err).String()
	}
	if len(response) == 0 {
		return "empty_response"
	}
	return "OK"
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i]) / float64(time.Millisecond)
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return math.NaN()
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func run(o options) (*result, error) {
	request, err := os.ReadFile(o.dataFile)
	if err != nil {
		return nil, err
	}
	conns := make([]*grpc.ClientConn, o.connections)
	for i := range conns {
		// Each ClientConn has its own HTTP/2 connection; the codec applies to every call on it.
		conns[i], err = grpc.NewClient(o.addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
		if err != nil {
			return nil, err
		}
		defer conns[i].Close()
		conns[i].Connect()
	}
	res := &result{Target: o.addr, Method: o.method, RequestBytes: len(request), Concurrency: o.concurrency,
		Connections: o.connections, WarmupS: o.warmup.Seconds(), DurationS: o.duration.Seconds(),
		Codes: map[string]int{}, FirstErrors: map[string]string{}}

	// One call before the load: the server must answer it, non-empty, with the expected bytes.
	first, err := call(conns[0], &o, &request)
	if err != nil {
		return nil, fmt.Errorf("first call: %w", err)
	}
	if len(first) == 0 {
		return nil, errors.New("first call: empty response")
	}
	if len(o.expect) > 0 {
		if !bytes.Contains(first, o.expect) {
			return nil, fmt.Errorf("first response (%d bytes) does not contain the expected %d bytes",
				len(first), len(o.expect))
		}
		res.ExpectChecked = true
	}
	res.ResponseBytes = len(first)

	start := time.Now()
	measureFrom := start.Add(o.warmup)
	measureTo := measureFrom.Add(o.duration)
	var stop atomic.Bool
	var inFlight atomic.Int64
	perWorker := make([][]sample, o.concurrency)
	firstErrors := make([]map[string]string, o.concurrency)
	var wg sync.WaitGroup
	for w := range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := conns[w%len(conns)]
			samples := make([]sample, 0, 4096)
			errs := map[string]string{}
			for !stop.Load() {
				inFlight.Add(1)
				t0 := time.Now()
				response, err := call(conn, &o, &request)
				t1 := time.Now()
				inFlight.Add(-1)
				code := codeOf(response, err)
				if err != nil && errs[code] == "" {
					errs[code] = err.Error()
				}
				samples = append(samples, sample{end: t1, latency: t1.Sub(t0), code: code})
			}
			perWorker[w] = samples
			firstErrors[w] = errs
		}()
	}
	time.Sleep(time.Until(measureFrom))
	cpu0 := cpuSeconds()
	time.Sleep(time.Until(measureTo))
	cpu1 := cpuSeconds()
	res.InFlightDropped = int(inFlight.Load())
	stop.Store(true)
	wg.Wait()

	latencies := make([]time.Duration, 0, 1<<16)
	var sum time.Duration
	for w, samples := range perWorker {
		for _, s := range samples {
			switch {
			case s.end.Before(measureFrom):
				res.WarmupRequests++
			case s.end.After(measureTo):
				// finished after the window: not counted
			default:
				res.Requests++
				res.Codes[s.code]++
				if s.code == "OK" {
					res.OK++
					latencies = append(latencies, s.latency)
					sum += s.latency
				}
			}
		}
		for code, msg := range firstErrors[w] {
			if _, seen := res.FirstErrors[code]; !seen {
				res.FirstErrors[code] = msg
			}
		}
	}
	res.ErrorsTotal = res.Requests - res.OK
	res.RequestsPerS = float64(res.Requests) / o.duration.Seconds()
	res.ClientCPUS = cpu1 - cpu0
	slices.Sort(latencies)
	res.LatencyMs = map[string]float64{}
	if len(latencies) > 0 {
		for _, p := range []float64{50, 75, 90, 99, 99.9} {
			res.LatencyMs[fmt.Sprintf("p%g", p)] = percentile(latencies, p)
		}
		res.LatencyMs["mean"] = float64(sum) / float64(len(latencies)) / float64(time.Millisecond)
		res.LatencyMs["max"] = float64(latencies[len(latencies)-1]) / float64(time.Millisecond)
	}
	if len(res.FirstErrors) == 0 {
		res.FirstErrors = nil
	}
	return res, nil
}

func main() {
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpcload:", err)
		os.Exit(2)
	}
	res, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpcload:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}
