// in_process (in_process.hpp): results, errors, crashes, concurrency, no zombies.
#include <doctest/doctest.h>

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "stallwatch/errors.hpp"
#include "stallwatch/in_process.hpp"
#include "stallwatch/loop.hpp"

using namespace std::chrono_literals;
namespace sw = stallwatch;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool built_with_asan = true;
#else
constexpr bool built_with_asan = false;
#endif

// As the header asks: the server starts before main, single-threaded.
const bool server_started = (sw::start_process_server(), true);

int seen_by_children = 1;

int add(int a, int b) { return a + b; }
std::string reverse(const std::string& s) { return std::string(s.rbegin(), s.rend()); }
std::size_t length_of(std::string s) { return s.size(); }
void nothing() {}
int fail_with_message(int) { throw std::runtime_error("bad input 42"); }
int segfault() {
  raise(SIGSEGV);
  return 0;
}
int killed() {
  raise(SIGKILL);
  return 0;
}
int exits(int code) { std::exit(code); }
int read_global() { return seen_by_children; }
int my_pid() { return getpid(); }
int never_returns() {
  for (;;) pause();
}
int never_returns_ignoring_sigterm() {
  signal(SIGTERM, SIG_IGN);
  for (;;) pause();
}
int sleeps(int ms) {
  usleep(static_cast<useconds_t>(ms) * 1000);
  return ms;
}

struct Stats {
  double mean;
  std::int64_t count;
  char tag[8];
};
Stats summarize(int n) {
  Stats s{};
  for (int i = 1; i <= n; ++i) s.mean += i;
  s.mean /= n;
  s.count = n;
  s.tag[0] = 'o';
  s.tag[1] = 'k';
  return s;
}

std::uint64_t burn(int ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  std::uint64_t x = 1;
  while (std::chrono::steady_clock::now() < until) x = x * 6364136223846793005u + 1;
  return x | 1;
}

// Parent pid (field 4) of each process in /proc.
std::vector<int> children_of(int parent) {
  std::vector<int> out;
  DIR* d = opendir("/proc");
  while (dirent* e = readdir(d)) {
    const int pid = std::atoi(e->d_name);
    if (pid <= 0) continue;
    std::ifstream stat("/proc/" + std::string(e->d_name) + "/stat");
    std::string line;
    std::getline(stat, line);
    const std::size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    char state;
    int ppid = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %d", &state, &ppid) == 2 && ppid == parent) out.push_back(pid);
  }
  closedir(d);
  return out;
}

// The state letter of a process (field 3 of /proc/PID/stat), 0 when it is gone.
char state_of(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const std::size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() ? line[close + 2] : '\0';
}

std::string error_of(auto&& call) {
  try {
    call();
  } catch (const sw::process_error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("results come back: scalars, strings, structs, void") {
  REQUIRE(server_started);
  sw::run([] {
    CHECK(sw::in_process(add, 2, 40) == 42);
    CHECK(sw::in_process(reverse, std::string("stallwatch")) == "hctawllats");
    const std::string big(3 << 20, 'z');
    CHECK(sw::in_process(length_of, big) == big.size());
    CHECK(sw::in_process([](int a) { return a * 3; }, 7) == 21);
    sw::in_process(nothing);
    const Stats s = sw::in_process(summarize, 100);
    CHECK(s.mean == doctest::Approx(50.5));
    CHECK(s.count == 100);
    CHECK(std::string(s.tag) == "ok");
    CHECK(sw::in_process(my_pid) != getpid());
  });
}

TEST_CASE("an exception in the child comes back with its message") {
  sw::run([] {
    const std::string what = error_of([] { sw::in_process(fail_with_message, 1); });
    CHECK(what.find("bad input 42") != std::string::npos);
  });
}

TEST_CASE("a crash or a kill comes back naming the signal; an early exit names the status") {
  sw::run([] {
    const std::string crash = error_of([] { sw::in_process(segfault); });
    if (built_with_asan) {
      // ASan handles the SIGSEGV itself, reports it, then aborts or exits.
      CHECK((crash.find("SIGABRT") != std::string::npos || crash.find("exited with status") != std::string::npos));
    } else {
      CHECK(crash.find("SIGSEGV") != std::string::npos);
    }
    CHECK(error_of([] { sw::in_process(killed); }).find("SIGKILL") != std::string::npos);
    CHECK(error_of([] { sw::in_process(exits, 7); }).find("status 7") != std::string::npos);
    CHECK(sw::in_process(add, 1, 1) == 2);  // the server survives its children's deaths
  });
}

TEST_CASE("children run from the start-up snapshot, as documented") {
  seen_by_children = 2;
  sw::run([] { CHECK(sw::in_process(read_global) == 1); });
  seen_by_children = 1;
}

TEST_CASE("calls run in parallel while the loop keeps running") {
  sw::run([] {
    int ticks = 0;
    bool running = true;
    auto ticker = sw::spawn([&] {
      while (running) {
        ++ticks;
        sw::sleep_for(5ms);
      }
    });
    std::vector<sw::Task<std::uint64_t>> calls;
    for (int i = 0; i < 6; ++i) calls.push_back(sw::spawn([] { return sw::in_process(burn, 200); }));
    for (auto& c : calls) CHECK(c.join() % 2 == 1);
    running = false;
    ticker.join();
    CHECK(ticks >= 5);
  });
}

TEST_CASE("no child is left behind, zombie or not") {
  sw::run([] {
    for (int i = 0; i < 20; ++i) {
      if (i % 3 == 0) {
        error_of([] { sw::in_process(segfault); });
      } else {
        CHECK(sw::in_process(add, i, 1) == i + 1);
      }
    }
  });
  const std::vector<int> ours = children_of(getpid());
  REQUIRE(ours.size() == 1);  // the fork server itself
  CHECK(children_of(ours[0]).empty());
}

TEST_CASE("a fork server that dies is reaped, named in the log, and replaced") {
  static std::mutex logged_mutex;  // the watchdog thread may log too
  static std::vector<std::string> logged;  // the log keeps the first sink it is given
  sw::Options options;
  options.log_sink = [](std::string_view line) {
    std::lock_guard lock(logged_mutex);
    logged.emplace_back(line);
  };
  sw::run(options, [] {
    CHECK(sw::in_process(add, 1, 2) == 3);  // the server runs
    const std::vector<int> before = children_of(getpid());
    REQUIRE(before.size() == 1);
    REQUIRE(kill(before[0], SIGKILL) == 0);
    // Once it is a zombie its socket is closed: the next call finds it gone.
    for (int i = 0; i < 500 && state_of(before[0]) != 'Z'; ++i) sw::sleep_for(10ms);
    REQUIRE(state_of(before[0]) == 'Z');
    CHECK(sw::in_process(add, 2, 2) == 4);
    const std::vector<int> after = children_of(getpid());
    REQUIRE(after.size() == 1);  // the new server; the old one reaped, no zombie
    CHECK(after[0] != before[0]);
  });
  bool named = false;
  std::lock_guard lock(logged_mutex);
  for (const std::string& line : logged) {
    named = named || (line.find("the fork server (pid ") != std::string::npos &&
                      line.find("was killed by signal 9 (SIGKILL); starting another") != std::string::npos);
  }
  CHECK(named);
}

TEST_CASE("a cancelled call says in_process: cancelled") {
  sw::run([] {
    auto call = sw::spawn([] { return sw::in_process(sleeps, 1000); }, "waits for a child");
    sw::sleep_for(50ms);
    call.cancel();
    CHECK_THROWS_WITH_AS(call.join(), "stallwatch: in_process: cancelled", sw::cancelled);
  });
}

TEST_CASE("a cancelled call's child that never returns is ended (SIGTERM, then SIGKILL) and reaped") {
  // Before: the child ran forever, reparented to init once the server went.
  sw::run([] {
    const std::vector<int> ours = children_of(getpid());
    REQUIRE(ours.size() == 1);  // the fork server
    const int server = ours[0];
    auto plain = sw::spawn([] { return sw::in_process(never_returns); }, "never returns");
    auto stubborn = sw::spawn([] { return sw::in_process(never_returns_ignoring_sigterm); }, "ignores SIGTERM");
    for (int i = 0; i < 500 && children_of(server).size() < 2; ++i) sw::sleep_for(10ms);
    REQUIRE(children_of(server).size() == 2);
    sw::sleep_for(50ms);  // the second child has set SIGTERM aside
    const auto cancelled_at = std::chrono::steady_clock::now();
    plain.cancel();
    stubborn.cancel();
    CHECK_THROWS_WITH_AS(plain.join(), "stallwatch: in_process: cancelled", sw::cancelled);
    CHECK_THROWS_WITH_AS(stubborn.join(), "stallwatch: in_process: cancelled", sw::cancelled);
    // SIGTERM ends the first at once; the second outlasts it until SIGKILL, a second later.
    for (int i = 0; i < 300 && children_of(server).size() > 1; ++i) sw::sleep_for(10ms);
    CHECK(children_of(server).size() <= 1);
    for (int i = 0; i < 1000 && !children_of(server).empty(); ++i) sw::sleep_for(10ms);
    CHECK(children_of(server).empty());  // both killed and reaped: no zombie either
    CHECK(std::chrono::steady_clock::now() - cancelled_at >= 900ms);
    CHECK(sw::in_process(add, 1, 2) == 3);  // the server serves on
  });
}
