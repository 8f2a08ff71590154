// Future<T> / Promise<T>: fulfilled on one thread or loop, got on another; a
// fiber parks, a plain thread blocks; deadlines, cancellation, broken promises.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "stallwatch/future.hpp"
#include "stallwatch/loop.hpp"
#include "stallwatch/loop_handle.hpp"

using namespace std::chrono_literals;
namespace sw = stallwatch;

TEST_CASE("a fiber parks in get() until a plain thread sets the value; the loop runs others meanwhile") {
  sw::run([] {
    sw::Promise<std::string> promise;
    sw::Future<std::string> future = promise.get_future();
    CHECK(future.valid());
    CHECK_FALSE(future.ready());
    // The value is set only once the ticker has run three times: get() must
    // park (not block the thread) for that to happen.
    std::atomic<int> ticks{0};
    auto ticker = sw::spawn([&] {
      for (int i = 0; i < 3; ++i, ++ticks) sw::sleep_for(1ms);
    });
    std::thread setter([&ticks, p = std::move(promise)]() mutable {
      for (int i = 0; i < 10'000 && ticks < 3; ++i) std::this_thread::sleep_for(1ms);
      p.set_value("from a thread");
    });
    CHECK(future.get(sw::deadline_after(20s)) == "from a thread");
    CHECK_FALSE(future.valid());
    CHECK(ticks == 3);
    ticker.join();
    setter.join();
  });
}

TEST_CASE("a plain thread blocks in get() until a fiber sets the value") {
  sw::Promise<int> promise;
  sw::Future<int> future = promise.get_future();
  std::thread getter([&] { CHECK(future.get(sw::deadline_after(10s)) == 5); });
  sw::run([&] {
    sw::sleep_for(10ms);
    promise.set_value(5);
  });
  getter.join();
}

TEST_CASE("get() past its deadline throws deadline_exceeded and the future stays valid") {
  sw::Promise<int> promise;
  sw::Future<int> future = promise.get_future();
  CHECK_THROWS_WITH_AS(future.get(sw::deadline_after(5ms)), "stallwatch: Future::get: deadline exceeded",
                       sw::deadline_exceeded);  // a plain thread
  sw::run([&] {
    CHECK_THROWS_AS(future.get(sw::deadline_after(5ms)), sw::deadline_exceeded);  // a fiber
    CHECK(future.valid());
    promise.set_value(9);
    CHECK(future.ready());
    CHECK(future.get(sw::deadline_after(5ms)) == 9);
  });
}

TEST_CASE("a fiber cancelled in get() throws cancelled and leaves no waiter behind") {
  sw::Promise<int> promise;
  sw::Future<int> future = promise.get_future();
  sw::run([&] {
    auto getter = sw::spawn([&] { return future.get(); });
    sw::sleep_for(2ms);
    getter.cancel();
    CHECK_THROWS_AS(getter.join(), sw::cancelled);
  });
  promise.set_value(1);  // no stale waiter to wake
  CHECK(future.get() == 1);
}

TEST_CASE("errors: set_exception, a broken promise, a second set, an empty future") {
  sw::Promise<void> failing;
  auto f1 = failing.get_future();
  failing.set_exception(std::make_exception_ptr(std::runtime_error("it failed")));
  CHECK_THROWS_WITH_AS(f1.get(), "it failed", std::runtime_error);
  CHECK_THROWS_AS(failing.set_value(), std::future_error);
  CHECK_THROWS_AS(failing.get_future(), std::future_error);

  sw::Future<int> orphan;
  {
    sw::Promise<int> dropped;
    orphan = dropped.get_future();
  }
  try {
    orphan.get();
    FAIL("get() returned");
  } catch (const std::future_error& e) {
    CHECK(e.code() == std::future_errc::broken_promise);
  }
  CHECK_THROWS_AS(orphan.get(), std::future_error);  // empty now: no_state
}

TEST_CASE("a promise fulfilled on one loop wakes fibers waiting on another loop, many times over") {
  // A ping-pong between two loops through fresh promises: every wake-up
  // crosses the loops' inboxes, with and without the target asleep.
  constexpr int rounds = 2000;
  std::promise<sw::LoopHandle> pong_loop;
  auto pong_handle = pong_loop.get_future().share();
  std::atomic<bool> pinging{true};
  sw::run_loops(2, [&](std::size_t i) {
    if (i == 0) {
      pong_loop.set_value(sw::this_loop());
      while (pinging) sw::sleep_for(1ms);  // loop 0 sleeps between rounds, or is busy in them
      return;
    }
    sw::LoopHandle pong = pong_handle.get();
    for (int r = 0; r < rounds; ++r) {
      CHECK(pong.submit([r] { return r + 1; }).get(sw::deadline_after(10s)) == r + 1);
    }
    pinging = false;
  });
}
