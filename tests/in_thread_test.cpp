// in_thread: results, exceptions, the loop keeps running, load on the pool.
#include <doctest/doctest.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "pool/pool_stats.hpp"
#include "stallwatch/in_thread.hpp"
#include "stallwatch/loop.hpp"

using namespace std::chrono_literals;
namespace sw = stallwatch;

TEST_CASE("in_thread returns the result from another thread and rethrows exceptions") {
  sw::run([] {
    const auto loop_thread = std::this_thread::get_id();
    auto where = sw::in_thread([] { return std::this_thread::get_id(); });
    CHECK(where != loop_thread);
    CHECK(sw::in_thread([](int a, int b) { return a + b; }, 2, 3) == 5);
    CHECK_THROWS_WITH_AS(sw::in_thread([]() -> int { throw std::out_of_range("pool says no"); }), "pool says no",
                         std::out_of_range);
  });
}

TEST_CASE("the loop keeps running fibers while a call blocks in the pool") {
  sw::run([] {
    int ticks = 0;
    auto ticker = sw::spawn([&] {
      for (int i = 0; i < 5; ++i) {
        sw::sleep_for(5ms);
        ++ticks;
      }
    });
    sw::in_thread([] { usleep(100'000); });
    CHECK(ticks == 5);
    ticker.join();
  });
}

TEST_CASE("in_thread under load: 2,000 calls from 200 fibers, every result right") {
  std::atomic<int> max_concurrent{0}, current{0};
  long sum = 0;
  sw::run([&] {
    std::vector<sw::Task<long>> tasks;
    for (int f = 0; f < 200; ++f) {
      tasks.push_back(sw::spawn([&, f] {
        long local = 0;
        for (int i = 0; i < 10; ++i) {
          local += sw::in_thread([&, f, i] {
            const int now = ++current;
            int seen = max_concurrent.load();
            while (now > seen && !max_concurrent.compare_exchange_weak(seen, now)) {
            }
            usleep(100);
            --current;
            return static_cast<long>(f * 10 + i);
          });
        }
        return local;
      }));
    }
    for (auto& t : tasks) sum += t.join();
  });
  CHECK(sum == 1999L * 2000 / 2);
  CHECK(max_concurrent.load() >= 2);
  const unsigned bound = std::max(4u, 2 * std::thread::hardware_concurrency());
  CHECK(max_concurrent.load() <= static_cast<int>(bound));
  CHECK(stallwatch::pool::pool_stats().pending == 0);
}

TEST_CASE("in_thread from two loops on two threads") {
  auto work = [] { return sw::run([] { return sw::in_thread([] { usleep(1000); return 1; }); }); };
  int other = 0;
  std::thread t([&] { other = work(); });
  const int mine = work();
  t.join();
  CHECK(mine + other == 2);
}
