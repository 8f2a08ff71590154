// bench/fiber_bench.cpp — the same cases on Boost.Fiber, with its defaults:
// round_robin scheduler, default_stack (fixedsize_stack, 128 KiB from malloc).
#include <boost/fiber/all.hpp>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace {

namespace fibers = boost::fibers;
namespace this_fiber = boost::this_fiber;

void yield_n(std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) this_fiber::yield();
}

// The same loop, compiled a second time: a fiber that yields from another function.
__attribute__((noinline)) void yield_n_elsewhere(std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) this_fiber::yield();
  asm volatile("");  // not folded into yield_n
}

void pingpong_of(bench::CaseArgs const& args, void (*first)(std::uint64_t), void (*second)(std::uint64_t)) {
  bench::time_per_op(args, 2.0 * static_cast<double>(args.n), [&](std::uint64_t n) {
    fibers::fiber a(first, n);
    fibers::fiber b(second, n);
    a.join();
    b.join();
  });
}

// Two fibers yield to each other; main waits in join. ns per yield.
void pingpong(bench::CaseArgs const& args) { pingpong_of(args, yield_n, yield_n); }
// The same, the two fibers yielding from different functions.
void pingpong_2fn(bench::CaseArgs const& args) { pingpong_of(args, yield_n, yield_n_elsewhere); }

// 1,000 fibers each yield n / 1000 times. ns per yield (creating the 1,000
// fibers is inside the timing and is well under 1% of it).
void yield_1000(bench::CaseArgs const& args) {
  constexpr std::uint64_t count = 1000;
  const std::uint64_t rounds = args.n / count;
  bench::time_per_op(args, static_cast<double>(rounds * count), [&](std::uint64_t) {
    std::vector<fibers::fiber> all;
    all.reserve(count);
    for (std::uint64_t i = 0; i < count; ++i) all.emplace_back(yield_n, rounds);
    for (auto& f : all) f.join();
  });
}

void spawn_join(bench::CaseArgs const& args) {
  bench::time_per_op(args, static_cast<double>(args.n), [](std::uint64_t n) {
    for (std::uint64_t i = 0; i < n; ++i) {
      fibers::fiber f([] {});
      f.join();
    }
  });
}

// n fibers wait on one condition variable; the sample is the CPU ms until all of
// them wait. Then they are released and joined.
void parked(bench::CaseArgs const& args) {
  fibers::mutex mutex;
  fibers::condition_variable released_cv;
  bool released = false;
  std::uint64_t waiting = 0;

  const std::uint64_t start = bench::now_ns(bench::Timing::thread_cpu);
  std::vector<fibers::fiber> all;
  all.reserve(args.n);
  for (std::uint64_t i = 0; i < args.n; ++i) {
    all.emplace_back([&] {
      std::unique_lock lock(mutex);
      ++waiting;
      released_cv.wait(lock, [&] { return released; });
    });
  }
  while (waiting < args.n) this_fiber::yield();
  bench::print_sample(static_cast<double>(bench::now_ns(bench::Timing::thread_cpu) - start) / 1e6);

  {
    std::unique_lock lock(mutex);
    released = true;
  }
  released_cv.notify_all();
  for (auto& f : all) f.join();
}

// One worker thread runs the calls; the fiber waits on a fibers::future, so
// the scheduler sleeps in its condition variable until the worker's
// set_value wakes it from the other thread.
class Offload {
 public:
  Offload() : worker_([this] { work(); }) {}
  ~Offload() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    ready_.notify_one();
    worker_.join();
  }

  void submit(std::function<void()> job) {
    {
      std::lock_guard lock(mutex_);
      jobs_.push_back(std::move(job));
    }
    ready_.notify_one();
  }

 private:
  void work() {
    std::unique_lock lock(mutex_);
    for (;;) {
      ready_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      auto job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::thread worker_;
};

void in_thread(bench::CaseArgs const& args) {
  Offload offload;
  bench::time_per_op(args, static_cast<double>(args.n), [&](std::uint64_t n) {
    for (std::uint64_t i = 0; i < n; ++i) {
      fibers::promise<int> promise;
      auto result = promise.get_future();
      offload.submit([&promise] { promise.set_value(1); });
      bench::keep(result.get());
    }
  }, bench::Timing::wall);
}


// A buffered_channel<std::uint64_t> of 1024 between a fiber on one thread
// and a fiber on another, each thread on the default round_robin scheduler.
// Items per second (stallwatch's channel_2loops with a SharedChannel).
void channel_2loops(bench::CaseArgs const& args) {
  bench::time_throughput(args, [](std::uint64_t n) {
    fibers::buffered_channel<std::uint64_t> ch(1024);
    std::uint64_t sum = 0;
    std::thread sender([&] {
      fibers::fiber([&] {
        for (std::uint64_t k = 0; k < n; ++k) ch.push(k);
        ch.close();
      }).join();
    });
    std::thread receiver([&] {
      fibers::fiber([&] {
        std::uint64_t v;
        while (ch.pop(v) == fibers::channel_op_status::success) sum += v;
      }).join();
    });
    sender.join();
    receiver.join();
    if (sum != n * (n - 1) / 2) throw std::runtime_error("channel_2loops: items lost");
  });
}

}  // namespace

int main(int argc, char** argv) {
  return bench::run_child(argc, argv,
                          {
                              {"pingpong", pingpong},
                              {"pingpong_2fn", pingpong_2fn},
                              {"yield_1000", yield_1000},
                              {"spawn_join", spawn_join},
                              {"parked", parked},
                              {"in_thread", in_thread},
                              {"channel_2loops", channel_2loops},
                          });
}
