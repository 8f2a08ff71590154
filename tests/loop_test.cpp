// run, spawn, Task, yield, sleep, cancellation, many fibers.
#include <doctest/doctest.h>

#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "stallwatch/collect.hpp"
#include "stallwatch/file.hpp"
#include "stallwatch/in_thread.hpp"
#include "stallwatch/io.hpp"
#include "stallwatch/loop.hpp"
#include "stallwatch/net.hpp"
#include "stallwatch/process.hpp"
#include "stallwatch/sync.hpp"

using namespace std::chrono_literals;
namespace sw = stallwatch;

TEST_CASE("run returns the main fiber's result and rethrows its exception") {
  CHECK(sw::run([] { return 42; }) == 42);
  CHECK_THROWS_WITH_AS(sw::run([]() -> int { throw std::runtime_error("boom"); }), "boom", std::runtime_error);
  CHECK_FALSE(sw::on_loop());
}

TEST_CASE("spawn and join return values and rethrow across join") {
  sw::run([] {
    auto a = sw::spawn([] { return std::string("a"); }, "a");
    auto b = sw::spawn([]() -> int { throw std::invalid_argument("bad b"); }, "b");
    CHECK(a.join() == "a");
    CHECK_THROWS_WITH_AS(b.join(), "bad b", std::invalid_argument);
    CHECK_FALSE(a.valid());
  });
}

TEST_CASE("calls outside a loop throw not_on_loop") {
  CHECK_THROWS_AS(sw::yield(), sw::not_on_loop);
  CHECK_THROWS_AS(sw::sleep_for(1ms), sw::not_on_loop);
  CHECK_THROWS_AS(sw::spawn([] {}), sw::not_on_loop);
}

TEST_CASE("each call off a loop names itself, not the call it is built on") {
  // Before: run_process and collect said "spawn called outside a fiber",
  // resolve "in_thread", connect "wait_writable".
  const auto off_loop = [](const char* call) {
    return std::string("stallwatch: ") + call + " called outside a fiber of a running loop";
  };
  CHECK_THROWS_WITH_AS(sw::run_process({"true"}), off_loop("run_process").c_str(), sw::not_on_loop);
  CHECK_THROWS_WITH_AS(sw::collect([] { return 1; }, [] { return 2; }), off_loop("collect").c_str(), sw::not_on_loop);
  std::vector<std::function<int()>> jobs{[] { return 1; }};
  CHECK_THROWS_WITH_AS(sw::collect(jobs, 2), off_loop("collect").c_str(), sw::not_on_loop);
  CHECK_THROWS_WITH_AS(sw::resolve(jobs, 2), off_loop("resolve").c_str(), sw::not_on_loop);
  CHECK_THROWS_WITH_AS(sw::resolve(std::string_view("localhost"), std::uint16_t{80}), off_loop("resolve").c_str(),
                       sw::not_on_loop);
  CHECK_THROWS_WITH_AS(sw::TcpStream::connect("127.0.0.1", 9), off_loop("connect").c_str(), sw::not_on_loop);
  CHECK_THROWS_WITH_AS(sw::read_file("/etc/hostname"), off_loop("read_file").c_str(), sw::not_on_loop);
  CHECK_THROWS_WITH_AS(sw::in_thread([] { return 1; }), off_loop("in_thread").c_str(), sw::not_on_loop);
}

TEST_CASE("run inside a loop is refused") {
  sw::run([] { CHECK_THROWS_AS(sw::run([] {}), std::logic_error); });
}

TEST_CASE("yield interleaves ready fibers in FIFO order") {
  std::vector<int> order;
  sw::run([&] {
    auto a = sw::spawn([&] {
      for (int i = 0; i < 3; ++i) {
        order.push_back(1);
        sw::yield();
      }
    });
    auto b = sw::spawn([&] {
      for (int i = 0; i < 3; ++i) {
        order.push_back(2);
        sw::yield();
      }
    });
    a.join();
    b.join();
  });
  CHECK(order == std::vector<int>{1, 2, 1, 2, 1, 2});
}

TEST_CASE("a fiber that yields with no other fiber ready still lets a due timer fire") {
  // Each yield returned at once, without the scheduler's pass: the timer
  // waited as long as the yielding went on, one slice for the watchdog.
  sw::run([] {
    bool rang = false;
    auto timer = sw::spawn([&] {
      sw::sleep_for(1ms);
      rang = true;
    }, "timer");
    sw::yield();  // the timer fiber starts and parks
    const auto due = std::chrono::steady_clock::now() + 1ms;
    const auto give_up = due + 2s;
    long yields_after_due = 0;
    while (!rang && std::chrono::steady_clock::now() < give_up) {
      if (std::chrono::steady_clock::now() > due) ++yields_after_due;
      sw::yield();
    }
    CHECK(rang);
    CHECK(yields_after_due < 1000);  // a run of direct switches is 64
    timer.join();
  });
}

TEST_CASE("sleep_for parks without blocking the loop and wakes in deadline order") {
  std::vector<int> woke;
  const auto start = std::chrono::steady_clock::now();
  sw::run([&] {
    std::vector<sw::Task<void>> tasks;
    for (int ms : {60, 20, 40}) {
      tasks.push_back(sw::spawn([&woke, ms] {
        sw::sleep_for(std::chrono::milliseconds(ms));
        woke.push_back(ms);
      }));
    }
    for (auto& t : tasks) t.join();
  });
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(woke == std::vector<int>{20, 40, 60});
  CHECK(took >= 60ms);
  CHECK(took < 2s);  // concurrent, not 120 ms in sequence; generous for a noisy machine
}

TEST_CASE("fiber ids and names") {
  sw::run([] {
    CHECK(sw::this_fiber_name() == "main");
    auto t = sw::spawn([] { return std::string(sw::this_fiber_name()); }, "handler GET /");
    const auto id = t.id();
    CHECK(id != sw::this_fiber_id());
    CHECK(t.join() == "handler GET /");
    CHECK(sw::this_loop_index() >= 0);
  });
}

TEST_CASE("join with a deadline throws deadline_exceeded and the task keeps running") {
  sw::run([] {
    auto slow = sw::spawn([] {
      sw::sleep_for(50ms);
      return 7;
    });
    CHECK_THROWS_AS(slow.join(sw::deadline_after(5ms)), sw::deadline_exceeded);
    CHECK(slow.join() == 7);
  });
}

TEST_CASE("cancel wakes a parked fiber with cancelled, and yield is a cancellation point") {
  sw::run([] {
    auto sleeper = sw::spawn([] { sw::sleep_for(10s); });
    auto spinner = sw::spawn([] {
      for (;;) sw::yield();
    });
    sw::yield();
    sleeper.cancel();
    spinner.cancel();
    CHECK_THROWS_AS(sleeper.join(), sw::cancelled);
    CHECK_THROWS_AS(spinner.join(), sw::cancelled);
  });
}

TEST_CASE("a fiber name is cut to 64 bytes, on a character boundary, in every line that shows it") {
  // Before: a 1 MB name gave a 1 MB exception line (stall lines cut it to 64 bytes).
  // Static: the first sink a loop sets also gets the process's later lines.
  static std::mutex lines_mutex;
  static std::vector<std::string> lines;
  sw::Options options;
  options.watchdog = false;
  options.log_sink = [](std::string_view line) {
    std::lock_guard lock(lines_mutex);
    lines.emplace_back(line);
  };
  const std::string huge(1 << 20, 'n');
  const std::string accented = std::string(63, 'a') + "\xc3\xa9";  // é spans bytes 63 and 64
  sw::run(options, [&] {
    auto named = sw::spawn([] { return std::string(sw::this_fiber_name()); }, huge);
    CHECK(named.join() == std::string(64, 'n'));
    auto cut_before_e = sw::spawn([] { return std::string(sw::this_fiber_name()); }, accented);
    CHECK(cut_before_e.join() == std::string(63, 'a'));
    sw::spawn([] { throw std::runtime_error("dropped"); }, huge);  // detached: its error is logged
    sw::yield();
  });
  std::lock_guard lock(lines_mutex);
  const auto logged = std::find_if(lines.begin(), lines.end(),
                                   [](const std::string& line) { return line.find("dropped") != std::string::npos; });
  REQUIRE(logged != lines.end());
  CHECK(logged->find("\"" + std::string(64, 'n') + "\"") != std::string::npos);
  CHECK(logged->size() < 300);
}

TEST_CASE("huge durations saturate: the sleep or wait lasts until cancelled or woken, never ends at once") {
  // Before: now() + seconds::max() wrapped into the past, so such a sleep
  // returned at once and such a wait threw deadline_exceeded after 0 ms.
  CHECK(sw::deadline_after(std::chrono::hours::max()).at == sw::Clock::time_point::max());
  CHECK(sw::deadline_after(std::chrono::nanoseconds::max()).at == sw::Clock::time_point::max());
  CHECK(sw::deadline_after(std::chrono::years(400)).at == sw::Clock::time_point::max());
  CHECK(sw::deadline_after(std::chrono::duration<double>(1e300)).at == sw::Clock::time_point::max());
  CHECK(sw::deadline_after(std::chrono::hours::min()).at < sw::Clock::now());
  const auto before = sw::Clock::now();
  const auto in_an_hour = sw::deadline_after(1h).at;
  CHECK(in_an_hour >= before + 1h);
  CHECK(in_an_hour <= sw::Clock::now() + 1h);
  sw::run([] {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    sw::Event never;
    std::vector<sw::Task<void>> waits;
    waits.push_back(sw::spawn([] { sw::sleep_for(std::chrono::seconds::max()); }));
    waits.push_back(sw::spawn([] { sw::sleep_for(std::chrono::years(400)); }));
    waits.push_back(sw::spawn([] { sw::sleep_for(std::chrono::nanoseconds::max()); }));
    waits.push_back(sw::spawn([&] { never.wait(sw::deadline_after(std::chrono::hours::max())); }));
    waits.push_back(sw::spawn([&] { sw::wait_readable(fds[0], sw::deadline_after(std::chrono::years(400))); }));
    auto sleeper = sw::spawn([] { sw::sleep_for(std::chrono::hours::max()); });
    waits.push_back(sw::spawn([&] { sleeper.join(sw::deadline_after(std::chrono::seconds::max())); }));
    sw::sleep_for(100ms);
    for (auto& w : waits) CHECK_FALSE(w.done());
    for (auto& w : waits) w.cancel();
    for (auto& w : waits) CHECK_THROWS_AS(w.join(), sw::cancelled);
    sleeper.cancel();
    CHECK_THROWS_AS(sleeper.join(), sw::cancelled);
    close(fds[0]);
    close(fds[1]);
  });
}

TEST_CASE("fibers still running when main returns are cancelled and drained") {
  bool unwound = false;
  sw::run([&] {
    struct Flag {
      bool& f;
      ~Flag() { f = true; }
    };
    sw::spawn([&] {
      Flag flag{unwound};
      sw::sleep_for(1h);
    });  // detached
  });
  CHECK(unwound);
}

TEST_CASE("100,000 fibers sleeping at once") {
  constexpr int count = 100'000;
  int finished = 0;
  sw::run(sw::Options{.stack_kb = 16}, [&] {
    std::vector<sw::Task<void>> tasks;
    tasks.reserve(count);
    for (int i = 0; i < count; ++i) {
      tasks.push_back(sw::spawn([&finished, i] {
        sw::sleep_for(std::chrono::milliseconds(10 + i % 50));
        ++finished;
      }));
    }
    for (auto& t : tasks) t.join();
  });
  CHECK(finished == count);
}

TEST_CASE("two threads each run their own loop") {
  int results[2] = {0, 0};
  std::thread other([&] { results[1] = sw::run([] { sw::sleep_for(5ms); return sw::this_loop_index() >= 0 ? 2 : -1; }); });
  results[0] = sw::run([] { sw::sleep_for(5ms); return 1; });
  other.join();
  CHECK(results[0] == 1);
  CHECK(results[1] == 2);
}

TEST_CASE("a loop with nothing ready sleeps in the kernel and burns no CPU") {
  timespec cpu_before{}, cpu_after{};
  sw::run(sw::Options{.watchdog = false}, [&] {
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu_before);
    auto sleeper = sw::spawn([] { sw::sleep_for(300ms); });
    sleeper.join();
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu_after);
  });
  const double cpu_ms = (cpu_after.tv_sec - cpu_before.tv_sec) * 1e3 + (cpu_after.tv_nsec - cpu_before.tv_nsec) / 1e6;
  CHECK(cpu_ms < 30.0);  // a busy-polling loop would burn ~300 ms here
}

TEST_CASE("Options::sched_batch runs the loop's thread under SCHED_BATCH and puts SCHED_OTHER back") {
  if (sched_getscheduler(0) != SCHED_OTHER) {
    MESSAGE("the test runs under a policy other than SCHED_OTHER: nothing to switch");
    return;
  }
  sw::Options options;
  options.sched_batch = true;
  int inside = -1;
  int started_thread = -1;
  sw::run(options, [&] {
    inside = sched_getscheduler(0);
    // A thread the loop's thread starts inherits the policy.
    std::thread([&] { started_thread = sched_getscheduler(0); }).join();
  });
  CHECK(inside == SCHED_BATCH);
  CHECK(started_thread == SCHED_BATCH);
  CHECK(sched_getscheduler(0) == SCHED_OTHER);

  // Off by default.
  sw::run([&] { inside = sched_getscheduler(0); });
  CHECK(inside == SCHED_OTHER);
}

TEST_CASE("Options::sched_batch leaves a policy the application chose") {
  const sched_param none{};
  std::thread([&] {
    REQUIRE(sched_setscheduler(0, SCHED_IDLE, &none) == 0);
    sw::Options options;
    options.sched_batch = true;
    int inside = -1;
    sw::run(options, [&] { inside = sched_getscheduler(0); });
    CHECK(inside == SCHED_IDLE);
    CHECK(sched_getscheduler(0) == SCHED_IDLE);
  }).join();
}
