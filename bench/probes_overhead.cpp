// What the blocking-call probes cost a probed call that is not flagged.
// Built without the probes: run it twice, plain and with
//   LD_PRELOAD=libstallwatch-probes.so
// and compare. Off a loop the probes add one call and a thread-local check;
// on a loop, a call that cannot wait also pays for the check that says so
// (fcntl F_GETFL / fstat, or a try-lock).
//
//   ninja -C build src/interpose/probes_overhead
//   build/src/interpose/probes_overhead
//   LD_PRELOAD=build/src/interpose/libstallwatch-probes.so build/src/interpose/probes_overhead
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <chrono>

#include "blocking/blocking_calls.hpp"
#include "stallwatch/loop.hpp"

namespace {

// A loop that never reports its long benchmark slices.
stallwatch::Options quiet_loop() {
  stallwatch::Options options;
  options.watchdog = false;
  options.metrics_addr = "off";
  options.stack_kb = 1024;
  return options;
}

void read_dev_zero_off_loop(benchmark::State& state) {
  const int fd = open("/dev/zero", O_RDONLY);
  char c;
  for (auto _ : state) benchmark::DoNotOptimize(read(fd, &c, 1));
  close(fd);
}
BENCHMARK(read_dev_zero_off_loop);

void mutex_lock_unlock_off_loop(benchmark::State& state) {
  pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
  for (auto _ : state) {
    pthread_mutex_lock(&mutex);
    pthread_mutex_unlock(&mutex);
  }
}
BENCHMARK(mutex_lock_unlock_off_loop);

// The check alone, as every interposer makes it first.
void should_flag_off_loop(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(stallwatch_probe_should_flag());
}
BENCHMARK(should_flag_off_loop);

// On a loop fiber, a read that cannot wait (non-blocking pipe, EAGAIN): the
// probes check the descriptor's mode and do not flag it.
void read_nonblocking_pipe_on_loop(benchmark::State& state) {
  int fds[2];
  if (pipe2(fds, O_NONBLOCK) != 0) {
    state.SkipWithError("pipe2 failed");
    return;
  }
  stallwatch::run(quiet_loop(), [&] {
    char c;
    for (auto _ : state) benchmark::DoNotOptimize(read(fds[0], &c, 1));
  });
  close(fds[0]);
  close(fds[1]);
}
BENCHMARK(read_nonblocking_pipe_on_loop);

// On a loop fiber, an uncontended lock: the probes take it with a try-lock.
void mutex_lock_unlock_on_loop(benchmark::State& state) {
  pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
  stallwatch::run(quiet_loop(), [&] {
    for (auto _ : state) {
      pthread_mutex_lock(&mutex);
      pthread_mutex_unlock(&mutex);
    }
  });
}
BENCHMARK(mutex_lock_unlock_on_loop);

}  // namespace

BENCHMARK_MAIN();
