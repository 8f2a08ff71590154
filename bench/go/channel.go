// bench/go/channel.go — the cross-thread channel case on Go, for the same
// driver (bench/driver.cpp): a buffered channel of 1024 between a sending
// goroutine and a receiving one, with GOMAXPROCS=2 (two OS threads run Go
// code, like the two loops of stallwatch's channel_2loops).
//
//	stallwatch-bench-go <case> <n> <reps>
//
// Prints items per second, one repetition per line, then "peak_rss_kib N";
// exits 3 for a case it does not have (harness.hpp's protocol).
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

func channelTwoGoroutines(n uint64) {
	ch := make(chan uint64, 1024)
	done := make(chan uint64)
	go func() {
		var sum uint64
		for v := range ch {
			sum += v
		}
		done <- sum
	}()
	go func() {
		for k := uint64(0); k < n; k++ {
			ch <- k
		}
		close(ch)
	}()
	if sum := <-done; sum != n*(n-1)/2 {
		fmt.Fprintln(os.Stderr, "channel_2loops: items lost")
		os.Exit(1)
	}
}

func peakRSSKiB() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		if line := scanner.Text(); strings.HasPrefix(line, "VmHWM:") {
			kib, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kib
		}
	}
	return -1
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintf(os.Stderr, "usage: %s <case> <n> <reps>\n", os.Args[0])
		os.Exit(2)
	}
	if os.Args[1] != "channel_2loops" {
		os.Exit(3)
	}
	n, err1 := strconv.ParseUint(os.Args[2], 10, 64)
	reps, err2 := strconv.Atoi(os.Args[3])
	if err1 != nil || err2 != nil || n == 0 || reps < 1 {
		fmt.Fprintf(os.Stderr, "%s: n and reps must be positive, got '%s' '%s'\n", os.Args[0], os.Args[2], os.Args[3])
		os.Exit(2)
	}
	runtime.GOMAXPROCS(2)
	channelTwoGoroutines(n/10 + 1) // warm-up, as time_throughput does
	for r := 0; r < reps; r++ {
		start := time.Now()
		channelTwoGoroutines(n)
		fmt.Printf("%.3f\n", float64(n)/time.Since(start).Seconds())
	}
	fmt.Printf("peak_rss_kib %d\n", peakRSSKiB())
}
