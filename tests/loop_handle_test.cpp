// LoopHandle (this_loop, post, submit) and run_loops: work handed to a loop
// from plain threads and other loops, errors crossing submit, loops that end
// with posts in flight.
#include <doctest/doctest.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "stallwatch/loop.hpp"
#include "stallwatch/loop_handle.hpp"
#include "stallwatch/sync.hpp"

using namespace std::chrono_literals;
namespace sw = stallwatch;

namespace {

// Runs a loop on its own thread until `stop` is set; hands its handle back.
struct LoopThread {
  std::promise<sw::LoopHandle> handle_promise;
  std::atomic<bool> stop{false};
  std::thread thread;
  sw::LoopHandle handle;

  LoopThread() {
    thread = std::thread([this] {
      sw::run([this] {
        handle_promise.set_value(sw::this_loop());
        while (!stop.load()) sw::sleep_for(1ms);
      });
    });
    handle = handle_promise.get_future().get();
  }
  ~LoopThread() {
    stop = true;
    thread.join();
  }
};

std::string thread_name() {
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof name);
  return name;
}

struct custom_error : std::runtime_error {
  int code;
  explicit custom_error(int c) : std::runtime_error("custom " + std::to_string(c)), code(c) {}
};

}  // namespace

TEST_CASE("this_loop throws not_on_loop off a loop; an empty handle refuses posts") {
  CHECK_THROWS_AS(sw::this_loop(), sw::not_on_loop);
  sw::LoopHandle empty;
  CHECK_FALSE(empty.valid());
  CHECK(empty.index() == -1);
  CHECK_THROWS_AS(empty.post([] {}), std::logic_error);
}

TEST_CASE("post from a plain thread runs as a new fiber on the loop, in the order posted") {
  sw::run([] {
    sw::LoopHandle here = sw::this_loop();
    CHECK(here.valid());
    CHECK(here.index() == sw::this_loop_index());
    CHECK(here == sw::this_loop());
    const auto loop_thread = std::this_thread::get_id();
    std::vector<int> order;
    bool on_loop_thread = true;
    std::string fiber_name;
    sw::Event all_done;
    std::thread poster([&] {
      for (int i = 0; i < 100; ++i) {
        here.post([&, i] {
          on_loop_thread = on_loop_thread && std::this_thread::get_id() == loop_thread;
          fiber_name = std::string(sw::this_fiber_name());
          order.push_back(i);
          if (i == 99) all_done.set();
        });
      }
    });
    all_done.wait(sw::deadline_after(10s));
    poster.join();
    CHECK(on_loop_thread);
    CHECK(fiber_name == "posted");
    REQUIRE(order.size() == 100);
    CHECK(std::is_sorted(order.begin(), order.end()));
  });
}

TEST_CASE("a posted fiber may park, and a post to its own loop runs after the poster yields") {
  sw::run([] {
    int steps = 0;
    sw::Event done;
    sw::this_loop().post([&] {
      sw::sleep_for(1ms);
      ++steps;
      done.set();
    });
    CHECK(steps == 0);  // not run inline
    done.wait(sw::deadline_after(5s));
    CHECK(steps == 1);
  });
}

TEST_CASE("submit returns the value to a plain thread (blocks) and to a fiber of another loop (parks)") {
  LoopThread target;
  CHECK(target.handle.submit([] { return 6 * 7; }).get(sw::deadline_after(10s)) == 42);
  CHECK(target.handle.submit([] { return std::string(sw::this_fiber_name()); }).get() == "submitted");
  target.handle.submit([] {}).get();  // Future<void>

  sw::run([&] {
    // While this fiber waits in get(), its loop keeps running the others:
    // the submitted call returns only once the ticker here has run.
    std::atomic<int> ticks{0};
    auto ticker = sw::spawn([&] {
      for (int i = 0; i < 3; ++i, ++ticks) sw::sleep_for(1ms);
    });
    auto answer = target.handle.submit([&ticks] {
      for (int i = 0; i < 10'000 && ticks < 3; ++i) sw::sleep_for(1ms);
      return sw::this_loop_index();
    });
    const int other_index = answer.get(sw::deadline_after(20s));
    CHECK(other_index == target.handle.index());
    CHECK(other_index != sw::this_loop_index());
    CHECK(ticks == 3);
    ticker.join();
  });
}

TEST_CASE("exceptions cross submit: the type and message reach get()") {
  LoopThread target;
  auto failing = target.handle.submit([]() -> int { throw custom_error(7); });
  try {
    failing.get(sw::deadline_after(10s));
    FAIL("get() returned");
  } catch (const custom_error& e) {
    CHECK(e.code == 7);
    CHECK(std::string(e.what()) == "custom 7");
  }
  CHECK_FALSE(failing.valid());
  sw::run([&] {
    auto f = target.handle.submit([] { throw std::out_of_range("from the other loop"); });
    CHECK_THROWS_WITH_AS(f.get(), "from the other loop", std::out_of_range);
  });
}

TEST_CASE("post and submit to a loop that has ended throw loop_stopped") {
  sw::LoopHandle ended;
  sw::run([&] { ended = sw::this_loop(); });
  CHECK(ended.stopped());
  int ran = 0;
  CHECK_THROWS_AS(ended.post([&] { ++ran; }), sw::loop_stopped);
  CHECK_THROWS_WITH_AS(ended.submit([] { return 1; }), doctest::Contains("has stopped"), sw::loop_stopped);
  CHECK(ran == 0);
}

// Under TSan a posted fiber costs about 3 ms (TSan builds a thread state
// for every fiber it is told of), so a post test sized for the plain build
// would run for hours: there the sizes are a few hundred.
#if defined(__SANITIZE_THREAD__)
constexpr long posts_scale = 1;
#else
constexpr long posts_scale = 40;
#endif

TEST_CASE("a loop that ends with posts in flight: every post either runs or gets loop_stopped") {
  // The loop ends once `enough` posts were accepted; the posters go at full
  // speed up to twice that, then one post a millisecond each until refused,
  // so that the posts the loop still owes stay bounded however slow it is.
  constexpr long enough = 500 * posts_scale;
  std::atomic<long> accepted{0}, refused{0}, ran{0};
  std::atomic<bool> handle_ready{false};
  sw::LoopHandle handle;
  std::vector<std::thread> posters;
  std::thread loop_thread([&] {
    sw::run([&] {
      handle = sw::this_loop();
      handle_ready = true;
      // End while the posters are at full speed.
      while (accepted.load() < enough) sw::sleep_for(100us);
    });
  });
  while (!handle_ready) std::this_thread::yield();
  for (int t = 0; t < 4; ++t) {
    posters.emplace_back([&] {
      for (;;) {
        try {
          if (accepted.load() >= 2 * enough) std::this_thread::sleep_for(1ms);
          handle.post([&] { ran.fetch_add(1); });
          accepted.fetch_add(1);
        } catch (const sw::loop_stopped&) {
          refused.fetch_add(1);
          return;
        }
      }
    });
  }
  for (auto& t : posters) t.join();
  loop_thread.join();
  INFO("accepted " << accepted << ", ran " << ran << ", refused " << refused);
  CHECK(accepted >= enough);
  CHECK(ran == accepted);  // none silently dropped
  CHECK(refused == 4);     // each poster heard it
}

TEST_CASE("4 threads post 1,000,000 items in all (2,000 under TSan): none lost, none duplicated") {
  constexpr int producers = 4;
  constexpr int per_producer = posts_scale == 1 ? 500 : 250'000;
  std::vector<std::uint8_t> seen(producers * per_producer, 0);
  std::atomic<bool> handle_ready{false};
  sw::LoopHandle handle;
  long duplicates = 0, received = 0;
  std::thread loop_thread([&] {
    sw::run([&] {
      handle = sw::this_loop();
      handle_ready = true;
      // Posted fibers run on this loop, one at a time: plain counters suffice.
      while (received < producers * per_producer) sw::sleep_for(1ms);
    });
  });
  while (!handle_ready) std::this_thread::yield();
  std::vector<std::thread> threads;
  for (int t = 0; t < producers; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < per_producer; ++i) {
        const int item = t * per_producer + i;
        handle.post([&, item] {
          if (seen[static_cast<std::size_t>(item)]++ != 0) ++duplicates;
          ++received;
        });
      }
    });
  }
  for (auto& t : threads) t.join();
  loop_thread.join();
  CHECK(received == producers * per_producer);
  CHECK(duplicates == 0);
  CHECK(std::count(seen.begin(), seen.end(), 1) == producers * per_producer);
}

TEST_CASE("run_loops runs F(i) on n named threads, each its own loop, and returns when all end") {
  std::vector<int> index(3, -2);
  std::vector<std::string> names(3);
  std::atomic<int> at_barrier{0};
  sw::run_loops(3, [&](std::size_t i) {
    index[i] = sw::this_loop_index();
    names[i] = thread_name();
    ++at_barrier;
    while (at_barrier.load() < 3) sw::sleep_for(1ms);  // all three run at once
  });
  CHECK(names == std::vector<std::string>{"stallwatch-0", "stallwatch-1", "stallwatch-2"});
  CHECK(index == std::vector<int>{0, 1, 2});  // F(i) runs on loop i, thread stallwatch-i
}

TEST_CASE("run_loops: F(i) runs on loop i, the n loops consecutive and in order, named after their index") {
  // Before: each thread claimed the lowest free record as it happened to
  // start, so thread stallwatch-3 could report as loop=4.
  constexpr std::size_t n = 6;
  for (int round = 0; round < 5; ++round) {
    std::vector<int> index(n, -2);
    std::vector<std::string> names(n);
    sw::run_loops(n, [&](std::size_t i) {
      index[i] = sw::this_loop_index();
      names[i] = thread_name();
    });
    for (std::size_t i = 0; i < n; ++i) {
      CHECK(index[i] == static_cast<int>(i));
      CHECK(names[i] == "stallwatch-" + std::to_string(i));
    }
  }
  // With loop 0 taken by run() on this thread, the n loops start at 1.
  sw::run([&] {
    std::vector<int> index(3, -2);
    std::vector<std::string> names(3);
    std::thread([&] {
      sw::run_loops(3, [&](std::size_t i) {
        index[i] = sw::this_loop_index();
        names[i] = thread_name();
      });
    }).join();
    CHECK(sw::this_loop_index() == 0);
    CHECK(index == std::vector<int>{1, 2, 3});
    CHECK(names == std::vector<std::string>{"stallwatch-1", "stallwatch-2", "stallwatch-3"});
  });
}

TEST_CASE("run_loops: the first error is rethrown and every later one is logged on its loop's sink") {
  // Static: the first sink a loop sets also gets the process's later lines.
  static std::mutex lines_mutex;
  static std::vector<std::string> lines;
  sw::Options options;
  options.watchdog = false;
  options.log_sink = [](std::string_view line) {
    std::lock_guard<std::mutex> lock(lines_mutex);
    lines.emplace_back(line);
  };
  std::atomic<bool> first_thrown{false};
  CHECK_THROWS_WITH_AS(sw::run_loops(options, 3,
                                     [&](std::size_t i) {
                                       if (i == 0) return;
                                       if (i == 1) {
                                         first_thrown = true;
                                       } else {
                                         while (!first_thrown) sw::sleep_for(1ms);
                                         sw::sleep_for(100ms);
                                       }
                                       throw std::runtime_error("loop " + std::to_string(i) + " failed");
                                     }),
                       "loop 1 failed", std::runtime_error);
  std::lock_guard<std::mutex> lock(lines_mutex);
  const auto logged = std::count_if(lines.begin(), lines.end(), [](const std::string& line) {
    return line == "stallwatch: run_loops: loop 2 ended with an exception after another loop's, which run_loops "
                   "rethrows: loop 2 failed";
  });
  CHECK(logged == 1);
}

TEST_CASE("run_loops: loops reach each other by submit; the first error is rethrown after all end") {
  std::promise<sw::LoopHandle> first;
  auto first_handle = first.get_future().share();
  std::atomic<int> ended{0};
  sw::run_loops(2, [&](std::size_t i) {
    if (i == 0) {
      first.set_value(sw::this_loop());
      sw::sleep_for(50ms);  // stays up while loop 1 calls in
    } else {
      sw::LoopHandle zero = first_handle.get();
      CHECK(zero.submit([] { return sw::this_loop_index(); }).get() == zero.index());
    }
    ++ended;
  });
  CHECK(ended == 2);

  std::atomic<int> finished{0};
  CHECK_THROWS_WITH_AS(sw::run_loops(3,
                                     [&](std::size_t i) {
                                       sw::sleep_for(std::chrono::milliseconds(10 * i));
                                       ++finished;
                                       if (i == 1) throw std::runtime_error("loop 1 failed");
                                     }),
                       "loop 1 failed", std::runtime_error);
  CHECK(finished == 3);
  CHECK_THROWS_WITH_AS(sw::run_loops(0, [](std::size_t) {}), doctest::Contains("accepted: 1 to 1024"),
                       std::invalid_argument);
}
