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

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char** argv) {
  const long n = argc > 1 ? atol(argv[1]) : 2000000;
  const int epfd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev;
  epoll_wait(epfd, &ev, 1, 0); /* the first wait wires the thread when watched */
  const double start = now_ns();
  for (long i = 0; i < n; ++i) epoll_wait(epfd, &ev, 1, 0);
  printf("%.1f ns per epoll_wait\n", (now_ns() - start) / n);
  return 0;
}
