// HTTP client benchmark, Go net/http: N goroutines doing keep-alive GETs of
// URL for a warm-up second and then SECONDS seconds (run with GOMAXPROCS=1).
// Prints "requests=R seconds=S rps=X maxrss_kib=M cpu_us_per_request=C" for
// the SECONDS after the warm-up (C: user and system time of all the
// process's threads over the requests).
//
//	stallwatch-bench-http-go URL N SECONDS
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func processCPUSeconds() float64 {
	var usage syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &usage)
	return float64(usage.Utime.Sec+usage.Stime.Sec) + float64(usage.Utime.Usec+usage.Stime.Usec)/1e6
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintf(os.Stderr, "usage: %s URL CONCURRENCY SECONDS\n", os.Args[0])
		os.Exit(2)
	}
	url := os.Args[1]
	concurrency, _ := strconv.Atoi(os.Args[2])
	seconds, _ := strconv.ParseFloat(os.Args[3], 64)
	transport := &http.Transport{MaxIdleConns: concurrency, MaxIdleConnsPerHost: concurrency}
	client := &http.Client{Transport: transport}
	var requests, failures atomic.Uint64
	warm := time.Now().Add(time.Second)
	end := warm.Add(time.Duration(seconds * float64(time.Second)))
	// At the end of the warm-up: the time, requests and CPU so far.
	var measuredFrom time.Time
	var requestsBefore uint64
	var cpuBefore float64
	warmed := make(chan struct{})
	time.AfterFunc(time.Until(warm), func() {
		measuredFrom = time.Now()
		requestsBefore = requests.Load()
		cpuBefore = processCPUSeconds()
		close(warmed)
	})
	var wg sync.WaitGroup
	for i := 0; i < concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				resp, err := client.Get(url)
				if err != nil {
					failures.Add(1)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode == 200 && len(body) == 5 {
					requests.Add(1)
				} else {
					failures.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	<-warmed
	elapsed := time.Since(measuredFrom).Seconds()
	cpu := processCPUSeconds() - cpuBefore
	counted := float64(requests.Load() - requestsBefore)
	var usage syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &usage)
	fmt.Printf("requests=%.0f failures=%d seconds=%.3f rps=%.0f maxrss_kib=%d cpu_us_per_request=%.1f\n",
		counted, failures.Load(), elapsed, counted/elapsed, usage.Maxrss, cpu*1e6/counted)
	if failures.Load() != 0 {
		os.Exit(1)
	}
}
