// bench/before_after.cpp — the loop-bound primitives' uncontended calls and
// the yield ping-pong, through the public API of any stallwatch version, so
// that scripts/bench-before-after.sh can build it against an older commit
// and this tree and run the two in turns. Prints one line: ns per sync call
// (Semaphore try_acquire/release, Mutex try_lock/unlock, Event set/is_set/
// clear) and ns per yield, median and min of 7 repetitions of thread CPU time.
#include <stallwatch/loop.hpp>
#include <stallwatch/sync.hpp>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace {

std::uint64_t cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

template <class T>
inline void keep(T const& v) {
  asm volatile("" : : "r,m"(v) : "memory");
}

}  // namespace

int main() {
  stallwatch::Options options;
  options.metrics_addr = "off";
  options.watchdog = false;  // the sync loop never yields: no stall reports
  stallwatch::run(options, [] {
    stallwatch::Semaphore sem(1);
    stallwatch::Mutex mutex;
    stallwatch::Event ev;
    const std::uint64_t n = 10'000'000;
    std::vector<double> sync_ns, yield_ns;
    for (int rep = 0; rep < 7; ++rep) {
      std::uint64_t t0 = cpu_ns();
      for (std::uint64_t i = 0; i < n; ++i) {
        keep(sem.try_acquire());
        sem.release();
        keep(mutex.try_lock());
        mutex.unlock();
        ev.set();
        keep(ev.is_set());
        ev.clear();
      }
      sync_ns.push_back(double(cpu_ns() - t0) / (7.0 * n));
      const std::uint64_t m = 2'000'000;
      t0 = cpu_ns();
      auto a = stallwatch::spawn([m] {
        for (std::uint64_t i = 0; i < m; ++i) stallwatch::yield();
      });
      auto b = stallwatch::spawn([m] {
        for (std::uint64_t i = 0; i < m; ++i) stallwatch::yield();
      });
      a.join();
      b.join();
      yield_ns.push_back(double(cpu_ns() - t0) / (2.0 * m));
    }
    std::sort(sync_ns.begin(), sync_ns.end());
    std::sort(yield_ns.begin(), yield_ns.end());
    std::printf("sync call ns: median %.2f min %.2f | yield ns: median %.2f min %.2f\n", sync_ns[3], sync_ns[0],
                yield_ns[3], yield_ns[0]);
  });
}
