/* A busy poller: an epoll loop that polls with a zero timeout, so its slices
 * are the gaps between polls. It times N empty polls and prints the cost of
 * one, which run plain and under stallwatch-watch gives what a healthy loop
 * pays per wait (docs/BENCHMARKS.md, "The watch").
 *
 *   stallwatch-watch -- stallwatch-watch-busy-poll [N] */
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>

static double clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char** argv) {
  const long n = argc > 1 ? atol(argv[1]) : 2000000;
  const int epfd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev;
  /* The first wait wires the thread when watched, which starts the watchdog
   * and its symbolizer warm-up: a second of polls first, so that start-up
   * work is not counted. */
  const double warm_until = clock_ns(CLOCK_MONOTONIC) + 1e9;
  while (clock_ns(CLOCK_MONOTONIC) < warm_until) epoll_wait(epfd, &ev, 1, 0);
  /* The thread's own CPU time as well as the wall time: on a loaded machine
   * the wall time also counts the time the thread waited for a CPU. */
  const double start = clock_ns(CLOCK_MONOTONIC);
  const double start_cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
  for (long i = 0; i < n; ++i) epoll_wait(epfd, &ev, 1, 0);
  const double cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID) - start_cpu;
  printf("%.1f ns of CPU, %.1f ns wall per epoll_wait\n", cpu / n, (clock_ns(CLOCK_MONOTONIC) - start) / n);
  return 0;
}
