// What the blocking-call probes cost a probed call that is not flagged.
// Built without the probes: run it twice, plain and with
//   LD_PRELOAD=libstallwatch-probes.so
// and compare. Off a loop the probes add one call and a thread-local check;
// on a loop, a call that cannot wait also pays for the check that says so
// (fcntl F_GETFL / fstat, a try-lock, a look at the timeout or the futex
// operation).
//
//   ninja -C build src/interpose/probes_overhead
//   build/src/interpose/probes_overhead
//   LD_PRELOAD=build/src/interpose/libstallwatch-probes.so build/src/interpose/probes_overhead
//
// The *_libc cases measure what libstallwatch's own wait interposers
// (core/wait_interpose.cpp) add: the same call made through them and
// straight to libc's definition. Off a loop they add one thread-local check;
// on a loop fiber they save the registers and publish the wait.
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <gnu/lib-names.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>

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

// The interposers of the standard library's waits, off a loop: each adds
// the same call and thread-local check. Uncontended locks and an available
// semaphore stay in user space; the futex wake, the non-futex syscall and
// the zero-timeout epoll_wait are one system call each.
void rwlock_rdlock_unlock_off_loop(benchmark::State& state) {
  pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
  for (auto _ : state) {
    pthread_rwlock_rdlock(&lock);
    pthread_rwlock_unlock(&lock);
  }
}
BENCHMARK(rwlock_rdlock_unlock_off_loop);

void mutex_timedlock_unlock_off_loop(benchmark::State& state) {
  pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
  const timespec far{0x7fffffff, 0};
  for (auto _ : state) {
    pthread_mutex_timedlock(&mutex, &far);
    pthread_mutex_unlock(&mutex);
  }
}
BENCHMARK(mutex_timedlock_unlock_off_loop);

void sem_timedwait_post_off_loop(benchmark::State& state) {
  sem_t sem;
  sem_init(&sem, 0, 1);
  const timespec far{0x7fffffff, 0};
  for (auto _ : state) {
    sem_timedwait(&sem, &far);
    sem_post(&sem);
  }
  sem_destroy(&sem);
}
BENCHMARK(sem_timedwait_post_off_loop);

void futex_wake_off_loop(benchmark::State& state) {
  std::uint32_t word = 0;
  for (auto _ : state) benchmark::DoNotOptimize(syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0));
}
BENCHMARK(futex_wake_off_loop);

// syscall() for anything but futex: the interposer forwards after one compare.
void syscall_getpid(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(syscall(SYS_getpid));
}
BENCHMARK(syscall_getpid);

void epoll_wait_zero_timeout_off_loop(benchmark::State& state) {
  const int ep = epoll_create1(0);
  epoll_event ev{};
  for (auto _ : state) benchmark::DoNotOptimize(epoll_wait(ep, &ev, 1, 0));
  close(ep);
}
BENCHMARK(epoll_wait_zero_timeout_off_loop);

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

// On a loop fiber, an uncontended std::shared_mutex-style read lock: the
// probes take it with a try-lock.
void rwlock_rdlock_unlock_on_loop(benchmark::State& state) {
  pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
  stallwatch::run(quiet_loop(), [&] {
    for (auto _ : state) {
      pthread_rwlock_rdlock(&lock);
      pthread_rwlock_unlock(&lock);
    }
  });
}
BENCHMARK(rwlock_rdlock_unlock_on_loop);

// On a loop fiber, a futex wake: not a wait, told apart by its operation.
void futex_wake_on_loop(benchmark::State& state) {
  std::uint32_t word = 0;
  stallwatch::run(quiet_loop(), [&] {
    for (auto _ : state) {
      benchmark::DoNotOptimize(syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0));
    }
  });
}
BENCHMARK(futex_wake_on_loop);

// ---- libstallwatch's wait interposers ----

// libc's own definition of `name`, behind every interposer.
template <class F>
F* libc_function(const char* name) {
  void* libc = dlopen(LIBC_SO, RTLD_LAZY | RTLD_NOLOAD);
  return reinterpret_cast<F*>(libc != nullptr ? dlsym(libc, name) : nullptr);
}

// poll with no descriptors and no timeout: a system call that never waits.
int poll_now_interposed() { return poll(nullptr, 0, 0); }
int poll_now_libc() {
  static auto* const real = libc_function<int(pollfd*, nfds_t, int)>("poll");
  return real(nullptr, 0, 0);
}

// epoll_wait on an empty set, no timeout.
struct EmptyEpoll {
  int fd = epoll_create1(EPOLL_CLOEXEC);
  ~EmptyEpoll() { close(fd); }
};
int epoll_now_interposed(int fd) {
  epoll_event events[4];
  return epoll_wait(fd, events, 4, 0);
}
int epoll_now_libc(int fd) {
  static auto* const real = libc_function<int(int, epoll_event*, int, int)>("epoll_wait");
  epoll_event events[4];
  return real(fd, events, 4, 0);
}

// clock_nanosleep on the calling thread's CPU clock: glibc answers EINVAL
// without a system call, so these cases time the interposer alone.
constexpr timespec no_time{0, 0};
int clock_nanosleep_einval_interposed() { return clock_nanosleep(CLOCK_THREAD_CPUTIME_ID, 0, &no_time, nullptr); }
int clock_nanosleep_einval_libc() {
  static auto* const real =
      libc_function<int(clockid_t, int, const timespec*, timespec*)>("clock_nanosleep");
  return real(CLOCK_THREAD_CPUTIME_ID, 0, &no_time, nullptr);
}

void clock_nanosleep_einval_off_loop(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(clock_nanosleep_einval_interposed());
}
BENCHMARK(clock_nanosleep_einval_off_loop);

void clock_nanosleep_einval_off_loop_libc(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(clock_nanosleep_einval_libc());
}
BENCHMARK(clock_nanosleep_einval_off_loop_libc);

void clock_nanosleep_einval_on_loop(benchmark::State& state) {
  stallwatch::run(quiet_loop(), [&] {
    for (auto _ : state) benchmark::DoNotOptimize(clock_nanosleep_einval_interposed());
  });
}
BENCHMARK(clock_nanosleep_einval_on_loop);

void clock_nanosleep_einval_on_loop_libc(benchmark::State& state) {
  stallwatch::run(quiet_loop(), [&] {
    for (auto _ : state) benchmark::DoNotOptimize(clock_nanosleep_einval_libc());
  });
}
BENCHMARK(clock_nanosleep_einval_on_loop_libc);

void poll_now_off_loop(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(poll_now_interposed());
}
BENCHMARK(poll_now_off_loop);

void poll_now_off_loop_libc(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(poll_now_libc());
}
BENCHMARK(poll_now_off_loop_libc);

void poll_now_on_loop(benchmark::State& state) {
  stallwatch::run(quiet_loop(), [&] {
    for (auto _ : state) benchmark::DoNotOptimize(poll_now_interposed());
  });
}
BENCHMARK(poll_now_on_loop);

void poll_now_on_loop_libc(benchmark::State& state) {
  stallwatch::run(quiet_loop(), [&] {
    for (auto _ : state) benchmark::DoNotOptimize(poll_now_libc());
  });
}
BENCHMARK(poll_now_on_loop_libc);

void epoll_wait_now_off_loop(benchmark::State& state) {
  EmptyEpoll ep;
  for (auto _ : state) benchmark::DoNotOptimize(epoll_now_interposed(ep.fd));
}
BENCHMARK(epoll_wait_now_off_loop);

void epoll_wait_now_off_loop_libc(benchmark::State& state) {
  EmptyEpoll ep;
  for (auto _ : state) benchmark::DoNotOptimize(epoll_now_libc(ep.fd));
}
BENCHMARK(epoll_wait_now_off_loop_libc);

void epoll_wait_now_on_loop(benchmark::State& state) {
  EmptyEpoll ep;
  stallwatch::run(quiet_loop(), [&] {
    for (auto _ : state) benchmark::DoNotOptimize(epoll_now_interposed(ep.fd));
  });
}
BENCHMARK(epoll_wait_now_on_loop);

void epoll_wait_now_on_loop_libc(benchmark::State& state) {
  EmptyEpoll ep;
  stallwatch::run(quiet_loop(), [&] {
    for (auto _ : state) benchmark::DoNotOptimize(epoll_now_libc(ep.fd));
  });
}
BENCHMARK(epoll_wait_now_on_loop_libc);

}  // namespace

BENCHMARK_MAIN();
