// bench/stallwatch_bench.cpp — the cases on stallwatch, through its public API
// only. Each case runs inside one run(), so starting the loop (and the
// watchdog thread, and its symbolizer's warm-up) is not timed. The metrics
// endpoint is off; the watchdog is on (the default) except in
// pingpong_watchdog_off.
#include <stallwatch/in_thread.hpp>
#include <stallwatch/loop.hpp>
#include <stallwatch/loop_handle.hpp>
#include <stallwatch/shared_channel.hpp>
#include <stallwatch/sync.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace {

stallwatch::Options bench_options(bool watchdog) {
  stallwatch::Options options;
  options.watchdog = watchdog;
  options.metrics_addr = "off";
  return options;
}

// run(), with the measurement started once the watchdog's start-up work is
// done (see wait_for_quiet_background).
template <class Body>
void run_settled(bool watchdog, Body body) {
  stallwatch::run(bench_options(watchdog), [&] {
    bench::wait_for_quiet_background([] { stallwatch::sleep_for(std::chrono::milliseconds(50)); });
    body();
  });
}

// Out of line, so that which function a fiber yields from is this one's
// choice, not the inliner's.
__attribute__((noinline)) void yield_n(std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) stallwatch::yield();
}

// The same loop, compiled a second time: a fiber that yields from another function.
__attribute__((noinline)) void yield_n_elsewhere(std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) stallwatch::yield();
  asm volatile("");  // not folded into yield_n
}

// Two fibers run first and second, yielding to each other; the main fiber
// waits in join. ns per yield.
void pingpong_of(bench::CaseArgs const& args, bool watchdog, void (*first)(std::uint64_t),
                 void (*second)(std::uint64_t)) {
  run_settled(watchdog, [&] {
    bench::time_per_op(args, 2.0 * static_cast<double>(args.n), [&](std::uint64_t n) {
      auto a = stallwatch::spawn([first, n] { first(n); }, "a");
      auto b = stallwatch::spawn([second, n] { second(n); }, "b");
      a.join();
      b.join();
    });
  });
}

// Both fibers yield from the same function (as in the Boost.Fiber case).
void pingpong_with(bench::CaseArgs const& args, bool watchdog) { pingpong_of(args, watchdog, yield_n, yield_n); }

// From different functions, so every return out of yield lands where the CPU
// did not predict (docs/BENCHMARKS.md).
void pingpong_2fn(bench::CaseArgs const& args) { pingpong_of(args, true, yield_n, yield_n_elsewhere); }

void pingpong(bench::CaseArgs const& args) { pingpong_with(args, true); }
void pingpong_watchdog_off(bench::CaseArgs const& args) { pingpong_with(args, false); }

// 1,000 fibers each yield n / 1000 times. ns per yield (spawning the 1,000
// fibers is inside the timing and is well under 1% of it).
void yield_1000(bench::CaseArgs const& args) {
  constexpr std::uint64_t count = 1000;
  const std::uint64_t rounds = args.n / count;
  run_settled(true, [&] {
    bench::time_per_op(args, static_cast<double>(rounds * count), [&](std::uint64_t) {
      std::vector<stallwatch::Task<void>> all;
      all.reserve(count);
      for (std::uint64_t i = 0; i < count; ++i) all.push_back(stallwatch::spawn([rounds] { yield_n(rounds); }));
      for (auto& t : all) t.join();
    });
  });
}

void spawn_join(bench::CaseArgs const& args) {
  run_settled(true, [&] {
    bench::time_per_op(args, static_cast<double>(args.n), [](std::uint64_t n) {
      for (std::uint64_t i = 0; i < n; ++i) stallwatch::spawn([] {}).join();
    });
  });
}

// n fibers wait on one Event; the sample is the CPU ms until all of them wait.
// Then the event is set and every fiber joined.
void parked(bench::CaseArgs const& args) {
  run_settled(true, [&] {
    stallwatch::Event released;
    std::uint64_t waiting = 0;

    const std::uint64_t start = bench::now_ns(bench::Timing::thread_cpu);
    std::vector<stallwatch::Task<void>> all;
    all.reserve(args.n);
    for (std::uint64_t i = 0; i < args.n; ++i) {
      all.push_back(stallwatch::spawn([&] {
        ++waiting;
        released.wait();
      }));
    }
    while (waiting < args.n) stallwatch::yield();
    bench::print_sample(static_cast<double>(bench::now_ns(bench::Timing::thread_cpu) - start) / 1e6);

    released.set();
    for (auto& t : all) t.join();
  });
}

// Sequential round trips through the offload pool: the fiber parks, a pool
// thread runs the call, the eventfd wakes the loop.
void in_thread(bench::CaseArgs const& args) {
  run_settled(true, [&] {
    bench::time_per_op(args, static_cast<double>(args.n), [](std::uint64_t n) {
      for (std::uint64_t i = 0; i < n; ++i) bench::keep(stallwatch::in_thread([] { return 1; }));
    }, bench::Timing::wall);
  });
}

// The loop-bound primitives' fast path with its owner check: an uncontended
// Semaphore try_acquire + release and Mutex try_lock + unlock. ns per pair.
void sync_fast_path(bench::CaseArgs const& args) {
  run_settled(true, [&] {
    stallwatch::Semaphore sem(1);
    stallwatch::Mutex mutex;
    bench::time_per_op(args, 2.0 * static_cast<double>(args.n), [&](std::uint64_t n) {
      for (std::uint64_t i = 0; i < n; ++i) {
        bench::keep(sem.try_acquire());
        sem.release();
        bench::keep(mutex.try_lock());
        mutex.unlock();
      }
    });
  });
}

// Plain threads post n items in all into one loop, each a fiber that counts
// itself; the clock stops when the last has run. Items per second.
void post_from(bench::CaseArgs const& args, int producers) {
  run_settled(true, [&] {
    stallwatch::LoopHandle loop = stallwatch::this_loop();
    bench::time_throughput(args, [&](std::uint64_t n) {
      std::uint64_t ran = 0;
      stallwatch::Event all_ran;
      std::vector<std::thread> threads;
      for (int p = 0; p < producers; ++p) {
        const std::uint64_t share = n / producers + (static_cast<std::uint64_t>(p) < n % producers ? 1 : 0);
        threads.emplace_back([&, share] {
          for (std::uint64_t i = 0; i < share; ++i) {
            loop.post([&] {
              if (++ran == n) all_ran.set();
            });
          }
        });
      }
      all_ran.wait();
      for (auto& t : threads) t.join();
    });
  });
}

void post_1(bench::CaseArgs const& args) { post_from(args, 1); }
void post_4(bench::CaseArgs const& args) { post_from(args, 4); }

// Two loops: loop 0 submits to loop 1 and waits for each answer, n times per
// repetition. The sample is the repetition's p50 or p99, in microseconds.
void submit_round_trip(bench::CaseArgs const& args, double q) {
  std::promise<stallwatch::LoopHandle> target_promise;
  auto target = target_promise.get_future().share();
  std::atomic<bool> measuring{true};
  stallwatch::run_loops(bench_options(true), 2, [&](std::size_t i) {
    if (i == 1) {
      target_promise.set_value(stallwatch::this_loop());
      while (measuring) stallwatch::sleep_for(std::chrono::milliseconds(5));
      return;
    }
    stallwatch::LoopHandle loop = target.get();
    std::vector<double> us(args.n);
    for (int r = -1; r < args.reps; ++r) {  // the first repetition warms up
      for (std::uint64_t k = 0; k < args.n; ++k) {
        const std::uint64_t start = bench::now_ns(bench::Timing::wall);
        bench::keep(loop.submit([k] { return k; }).get());
        us[k] = static_cast<double>(bench::now_ns(bench::Timing::wall) - start) / 1e3;
      }
      if (r >= 0) bench::print_sample(bench::quantile(us, q));
    }
    measuring = false;
  });
}

void submit_p50(bench::CaseArgs const& args) { submit_round_trip(args, 0.50); }
void submit_p99(bench::CaseArgs const& args) { submit_round_trip(args, 0.99); }

// A SharedChannel<std::uint64_t> of 1024 between a sending fiber on loop 0
// and a receiving fiber on loop 1. Items per second.
void channel_2loops(bench::CaseArgs const& args) {
  bench::time_throughput(args, [](std::uint64_t n) {
    stallwatch::SharedChannel<std::uint64_t> ch(1024);
    std::uint64_t sum = 0;
    stallwatch::run_loops(bench_options(true), 2, [&](std::size_t i) {
      if (i == 0) {
        for (std::uint64_t k = 0; k < n; ++k) ch.send(k);
        ch.close();
      } else {
        while (auto v = ch.receive()) sum += *v;
      }
    });
    if (sum != n * (n - 1) / 2) throw std::runtime_error("channel_2loops: items lost");
  });
}

}  // namespace

int main(int argc, char** argv) {
  return bench::run_child(argc, argv,
                          {
                              {"pingpong", pingpong},
                              {"pingpong_watchdog_off", pingpong_watchdog_off},
                              {"pingpong_2fn", pingpong_2fn},
                              {"yield_1000", yield_1000},
                              {"spawn_join", spawn_join},
                              {"parked", parked},
                              {"in_thread", in_thread},
                              {"sync_fast_path", sync_fast_path},
                              {"post_1", post_1},
                              {"post_4", post_4},
                              {"submit_p50", submit_p50},
                              {"submit_p99", submit_p99},
                              {"channel_2loops", channel_2loops},
                          });
}
