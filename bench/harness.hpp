// bench/harness.hpp — the child side of the benchmark harness.
//
// Every implementation under test (raw Boost.Context, Boost.Fiber,
// stallwatch) is its own executable, so the three never share a process, a
// heap or a thread: the driver (driver.cpp) starts one child per case, so
// each case's peak RSS is its own. A child is called as
//
//   <exe> <case> <n> <reps>
//
// and prints one sample per line on stdout (the unit is the case's: ns per
// operation, or ms for the parked cases), then one line "peak_rss_kib N" with
// its VmHWM. Exit 0 on success, 3 for a case the implementation does not
// have, anything else (or a signal) is a failure whose stderr the driver shows.
#pragma once

#include <dirent.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <functional>
#include <map>
#include <string>
#include <vector>
#include <algorithm>

namespace bench {

inline constexpr int exit_unsupported = 3;
// A child that runs longer than this is killed by SIGALRM: a benchmark must
// stop by itself even when the scheduler under test hangs.
inline constexpr unsigned child_time_limit_s = 300;

// Keeps the compiler from deleting a computation whose result is unused.
template <class T>
inline void keep(T const& value) {
  asm volatile("" : : "r,m"(value) : "memory");
}

// What one case receives: the size of one repetition and how many to run.
struct CaseArgs {
  std::uint64_t n = 0;
  int reps = 1;
};

// A case prints its own samples with print_sample(); run_child() handles the
// arguments, the time limit and the exit code.
using case_fn = std::function<void(CaseArgs const&)>;

inline void print_sample(double value) {
  std::printf("%.3f\n", value);
  std::fflush(stdout);
}

// Which clock a timed case reads. The machine is shared, so a case that runs
// on one thread is timed by that thread's CPU time: the time the OS gives to
// other processes does not count against it. A case that waits for another
// thread (in_thread) is timed by the wall clock.
enum class Timing { thread_cpu, wall };

inline std::uint64_t now_ns(Timing timing) {
  timespec ts{};
  clock_gettime(timing == Timing::thread_cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

// CPU time used so far by this process's threads other than the caller
// (/proc/self/task/*/schedstat, nanoseconds).
inline std::uint64_t other_threads_cpu_ns() {
  std::uint64_t total = 0;
  const long self = static_cast<long>(gettid());
  if (DIR* tasks = opendir("/proc/self/task")) {
    while (const dirent* task = readdir(tasks)) {
      if (task->d_name[0] == '.' || std::atol(task->d_name) == self) continue;
      const std::string path = std::string("/proc/self/task/") + task->d_name + "/schedstat";
      if (FILE* f = std::fopen(path.c_str(), "r")) {
        unsigned long long on_cpu = 0;
        if (std::fscanf(f, "%llu", &on_cpu) == 1) total += on_cpu;
        std::fclose(f);
      }
    }
    closedir(tasks);
  }
  return total;
}

// Waits, calling sleep_50ms between looks, until the process's other threads
// use under 2% of a CPU (or 10 s have passed). Start-up work on a background
// thread (stallwatch's symbolizer warm-up) would otherwise share the machine
// with the first repetitions and make them slower at random.
template <class Sleep>
void wait_for_quiet_background(Sleep sleep_50ms) {
  std::uint64_t before = other_threads_cpu_ns();
  for (int i = 0; i < 200; ++i) {
    sleep_50ms();
    const std::uint64_t after = other_threads_cpu_ns();
    if (after - before < 1'000'000) return;
    before = after;
  }
}

// Runs body once untimed (to warm caches, stacks and pools), then reps times,
// printing the time per operation of each repetition. body(n) must perform
// exactly ops_per_rep operations.
inline void time_per_op(CaseArgs const& args, double ops_per_rep, const std::function<void(std::uint64_t)>& body,
                        Timing timing = Timing::thread_cpu) {
  body(args.n);
  for (int r = 0; r < args.reps; ++r) {
    const std::uint64_t start = now_ns(timing);
    body(args.n);
    print_sample(static_cast<double>(now_ns(timing) - start) / ops_per_rep);
  }
}

// Runs body once untimed, then reps times, printing items per second of each
// repetition by the wall clock (the cases that use it cross threads). body(n)
// must move exactly n items.
inline void time_throughput(CaseArgs const& args, const std::function<void(std::uint64_t)>& body) {
  body(args.n / 10 + 1);
  for (int r = 0; r < args.reps; ++r) {
    const std::uint64_t start = now_ns(Timing::wall);
    body(args.n);
    print_sample(static_cast<double>(args.n) * 1e9 / static_cast<double>(now_ns(Timing::wall) - start));
  }
}

// The q-quantile (0..1) of samples, nearest rank; sorts them.
inline double quantile(std::vector<double>& samples, double q) {
  std::sort(samples.begin(), samples.end());
  const auto rank = static_cast<std::size_t>(q * static_cast<double>(samples.size() - 1) + 0.5);
  return samples[rank];
}

// The peak resident set of this process image, from /proc/self/status VmHWM
// (wait4's ru_maxrss would also count the driver's pages from before exec).
inline long peak_rss_kib() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, "VmHWM:", 6) == 0) kib = std::strtol(line + 6, nullptr, 10);
  }
  std::fclose(f);
  return kib;
}

inline int run_child(int argc, char** argv, const std::map<std::string, case_fn>& cases) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s <case> <n> <reps>\n", argv[0]);
    return 2;
  }
  auto it = cases.find(argv[1]);
  if (it == cases.end()) return exit_unsupported;
  CaseArgs args;
  args.n = std::strtoull(argv[2], nullptr, 10);
  args.reps = std::atoi(argv[3]);
  if (args.n == 0 || args.reps < 1) {
    std::fprintf(stderr, "%s: n and reps must be positive, got '%s' '%s'\n", argv[0], argv[2], argv[3]);
    return 2;
  }
  alarm(child_time_limit_s);
  try {
    it->second(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s %s: %s\n", argv[0], argv[1], e.what());
    return 1;
  }
  std::printf("peak_rss_kib %ld\n", peak_rss_kib());
  return 0;
}

}  // namespace bench
