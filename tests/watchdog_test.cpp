// The watchdog end to end, with real loops: stalls named by function and
// file:line while they last, cooperative code never reported, rate limit,
// dedup, two loops, the profile, fork, and the thread stopping with the last
// loop.
#include <doctest/doctest.h>

#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstdint>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "core/loop_record.hpp"
#include "emit/emitter.hpp"
#include "symbolize/shared_symbolizer.hpp"
#include "watchdog/state.hpp"
#include "watchdog/watchdog.hpp"
#include "stallwatch/loop.hpp"
#include "stallwatch/testing.hpp"
#include "stallwatch/watchdog.hpp"

using namespace std::chrono_literals;
namespace sw = stallwatch;

namespace {

// Collects the lines a loop logs; thread-safe.
struct Lines {
  std::mutex mutex;
  std::vector<std::string> lines;

  sw::Options options(int threshold_ms = 50) {
    sw::Options o;
    o.threshold = std::chrono::milliseconds(threshold_ms);
    o.log_format = sw::log_format::text;
    o.reports_per_minute = 100;
    o.log_sink = [this](std::string_view line) {
      std::lock_guard lock(mutex);
      lines.emplace_back(line);
    };
    return o;
  }
  std::vector<std::string> snapshot() {
    std::lock_guard lock(mutex);
    return lines;
  }
  int count_containing(const std::string& needle) {
    int n = 0;
    for (const auto& l : snapshot()) n += l.find(needle) != std::string::npos ? 1 : 0;
    return n;
  }
  std::string all() {
    std::string out;
    for (const auto& l : snapshot()) out += l + "\n";
    return out;
  }
};

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

std::atomic<std::uint64_t> burn_sink{0};

// How long a stall that waits for its own report may last: a report the
// watchdog lost.
constexpr std::uint64_t wait_for_report_ns = 30'000'000'000;

// Until the stall ends, when its function's report is awaited (lines given):
// ms milliseconds have passed and the report is in, or wait_for_report_ns
// have passed without it. Not a fixed time: the report's delivery thread
// waits for a CPU. At load 13-19 on these two cores, under TSan (80-90 ms of
// CPU to name a first stack: libdw's locks go through TSan's interceptors,
// and the delivery thread waited 460-980 ms for a CPU meanwhile), the report
// reached the sink 0.5-1 s after its sample was taken: a 300 ms stall had
// ended first 20 runs in 20, a 1 s stall 17 in 20.
std::uint64_t stall_end_ns(std::uint64_t start, int ms, const Lines* lines, bool seen) {
  const std::uint64_t at_least = start + static_cast<std::uint64_t>(ms) * 1'000'000;
  if (lines == nullptr || seen) return at_least;
  return std::max(at_least, start + wait_for_report_ns);
}

// Computes for ms milliseconds of wall time; given `lines`, also until they
// hold a report naming this function (stall_end_ns), and returns whether
// they did while it still ran.
__attribute__((noinline)) bool cpu_burn(int ms, Lines* lines) {
  const std::uint64_t start = now_ns();
  std::uint64_t x = 1;
  bool seen = false;
  int n = 0;
  while (now_ns() < stall_end_ns(start, ms, lines, seen)) {
    for (int i = 0; i < 10000; ++i) x = x * 6364136223846793005ull + 1;
    if (lines != nullptr && !seen && ++n % 64 == 0) seen = lines->count_containing("cpu_burn(int,") > 0;
  }
  burn_sink += x;
  return seen;
}

// Blocks the loop thread in usleep for ms milliseconds, 20 ms at a time, and
// like cpu_burn until a report naming this function arrived; returns whether
// it did while it still blocked.
__attribute__((noinline)) bool blocking_sleep(int ms, Lines* lines) {
  const std::uint64_t start = now_ns();
  bool seen = false;
  for (;;) {
    const std::uint64_t now = now_ns();
    const std::uint64_t end = stall_end_ns(start, ms, lines, seen);
    if (now >= end) break;
    usleep(static_cast<useconds_t>(std::min<std::uint64_t>((end - now) / 1000, 20'000)));  // LINE:usleep
    if (!seen && lines != nullptr) seen = lines->count_containing("blocking_sleep(int,") > 0;
  }
  return seen;
}

// The line of this file that ends in `// LINE:<name>` (TESTS_SOURCE_DIR:
// tests/ in the source tree, set by meson).
int marker_line(const std::string& name) {
  const char* dir = std::getenv("TESTS_SOURCE_DIR");
  REQUIRE(dir != nullptr);
  std::ifstream in(std::string(dir) + "/watchdog_test.cpp");
  std::string text;
  for (int n = 1; std::getline(in, text); ++n) {
    if (text.ends_with("// LINE:" + name)) return n;
  }
  return -1;
}

std::uint64_t suppressed_on(int loop_index) {
  std::uint64_t n = 0;
  stallwatch::core::for_each_loop_record([&](stallwatch::core::LoopRecord& r) {
    if (r.index == loop_index) n = r.stalls.reports_suppressed.get();
  });
  return n;
}

bool watchdog_thread_alive() {
  DIR* dir = opendir("/proc/self/task");
  bool found = false;
  while (dirent* e = readdir(dir)) {
    std::ifstream comm(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string name;
    std::getline(comm, name);
    if (name == "stallwatch-wd") found = true;
  }
  closedir(dir);
  return found;
}

// Loads every module's debug info into the process's symbolizer now. The
// cases that check a report arrives while its stall lasts test the watchdog,
// not how long a cold symbolizer reads this binary's DWARF (seconds under
// TSan on a loaded machine), which is the first report's cost.
void warm_symbolizer() {
  auto& shared = stallwatch::symbolize::shared_symbolizer();
  std::lock_guard lock(shared.mutex);
  for (std::uintptr_t start : shared.get().module_starts()) shared.get().warm_up_module(start);
}

}  // namespace

TEST_CASE("a CPU-bound function is named with file:line while it still stalls") {
  warm_symbolizer();
  Lines lines;
  bool seen_while_stalled = false;
  sw::run(lines.options(), [&] {
    auto t = sw::spawn([&] { return cpu_burn(1000, &lines); }, "cpu hog");
    seen_while_stalled = t.join();
  });
  INFO(lines.all());
  CHECK(seen_while_stalled);
  // on-cpu, or preempted when the machine is too loaded to give it a CPU.
  CHECK(lines.count_containing("\"cpu hog\" on-cpu for ") + lines.count_containing("\"cpu hog\" preempted for ") >= 1);
  CHECK(lines.count_containing("cpu_burn(int, (anonymous namespace)::Lines*) at ") >= 1);
  CHECK(lines.count_containing("tests/watchdog_test.cpp:") >= 1);
  CHECK(lines.count_containing("(watchdog_test+0x") >= 1);
  // Samples at T, 2T, 4T, …: a 1 s stall at T = 50 ms has about 5.
  CHECK(lines.count_containing("sample 3") >= 1);
  // Its stall ends once. (The loop's start-up is a stall of its own when the
  // machine keeps the thread off a CPU for T: at load 13-19 under TSan, 13
  // runs in 20.)
  CHECK(lines.count_containing("\"cpu hog\" after ") == 1);
  CHECK_FALSE(watchdog_thread_alive());
}

TEST_CASE("a blocking usleep is named, and classified blocked in clock_nanosleep") {
  warm_symbolizer();
  Lines lines;
  bool seen_while_stalled = false;
  sw::run(lines.options(), [&] {
    auto t = sw::spawn([&] { return blocking_sleep(300, &lines); }, "sleepy");
    seen_while_stalled = t.join();
  });
  INFO(lines.all());
  CHECK(seen_while_stalled);
  CHECK(lines.count_containing("\"sleepy\" blocked in clock_nanosleep for ") >= 1);
  CHECK(lines.count_containing("blocking_sleep(int, (anonymous namespace)::Lines*)") >= 1);
  CHECK(lines.count_containing("tests/watchdog_test.cpp:") >= 1);
  // Taken from the registers the usleep interposer saved, without a signal:
  // frame #0 is the caller's line, not libc's usleep.
  int first_frames_in_caller = 0;
  for (const std::string& line : lines.snapshot()) {
    const std::size_t frame = line.find("\n  #0 0x");
    if (frame == std::string::npos) continue;
    const std::string first = line.substr(frame, line.find('\n', frame + 1) - frame);
    first_frames_in_caller += first.find("blocking_sleep(int,") != std::string::npos ? 1 : 0;
  }
  CHECK(first_frames_in_caller >= 1);
  CHECK(lines.count_containing(" usleep (libc") == 0);
  // The head line names the culprit: past libc's frames, the line calling usleep.
  CHECK(lines.count_containing(" ms in (anonymous namespace)::blocking_sleep(int, (anonymous namespace)::Lines*)") >= 1);
  CHECK(lines.count_containing("tests/watchdog_test.cpp:" + std::to_string(marker_line("usleep")) + " (cpu ") >= 1);
  CHECK(lines.count_containing("\"sleepy\" after ") == 1);
}

TEST_CASE("cooperative sleep_for, yield and join are never reported") {
  const std::uint64_t before = sw::stall_count();
  Lines lines;
  sw::run(lines.options(20), [&] {
    auto a = sw::spawn([] { sw::sleep_for(200ms); }, "sleeper");
    auto b = sw::spawn([] {
      for (int i = 0; i < 100; ++i) {
        sw::sleep_for(2ms);
        sw::yield();
      }
    }, "yielder");
    a.join();
    b.join();
    sw::sleep_for(100ms);
  });
  INFO(lines.all());
  // A slice the kernel kept off a CPU for T (20 ms) is a stall, and the
  // watchdog says so: preempted (at load 15 under TSan, 1 run in 5). A
  // cooperative wait reported would read blocked in epoll_wait, or on-cpu.
  const int reports = lines.count_containing("stallwatch: stall loop=");
  CHECK(lines.count_containing(" preempted for ") == reports);
  CHECK(sw::stall_count() - before == static_cast<std::uint64_t>(lines.count_containing("stallwatch: stall ended")));
}

TEST_CASE("the rate limit holds reports back, counts them and summarises them") {
  Lines lines;
  auto options = lines.options();
  options.reports_per_minute = 2;
  int loop_index = -1;
  sw::run(options, [&] {
    loop_index = sw::this_loop_index();
    for (int i = 0; i < 5; ++i) {
      cpu_burn(120, nullptr);
      sw::sleep_for(1ms);  // parks: the next burn is a new slice
    }
  });
  INFO(lines.all());
  // Five stalls, two reports let through; a stall slowed past 2T by the
  // machine's load has a second sample, which is one more report held back.
  CHECK(lines.count_containing("stallwatch: stall loop=") == 2);
  CHECK(lines.count_containing("stall ended") >= 1);
  const std::string prefix = "stallwatch: suppressed ";
  std::uint64_t summarised = 0;
  for (const auto& line : lines.snapshot()) {
    if (line.rfind(prefix, 0) == 0) {
      summarised += std::stoull(line.substr(prefix.size()));
      CHECK(line.find(" stall reports on loop " + std::to_string(loop_index) + " in the last minute") !=
            std::string::npos);
    }
  }
  CHECK(summarised >= 3);
  CHECK(suppressed_on(loop_index) >= summarised);
}

TEST_CASE("identical stacks are deduplicated with a count") {
  Lines lines;
  sw::run(lines.options(), [&] {
    for (int i = 0; i < 3; ++i) {
      cpu_burn(120, nullptr);
      sw::sleep_for(1ms);
    }
  });
  INFO(lines.all());
  // Frame #0 differs between samples (the PC moves in the loop), so compare
  // what dedup promises: a repeated stack is printed once, then counted.
  const int reports = lines.count_containing("stallwatch: stall loop=");
  CHECK(reports >= 3);
  // A sample whose stack was not captured (on a loaded machine, a slice can
  // end before the watchdog runs to sample it) has none to print or repeat.
  const int full = lines.count_containing("#0 0x");
  const int repeats = lines.count_containing("same stack as an earlier report");
  const int without = lines.count_containing("(stack not captured");
  CHECK(full >= 1);
  CHECK(full + repeats + without == reports);
}

TEST_CASE("two threads each running a loop are both watched") {
  Lines lines;
  std::atomic<int> index_a{-1}, index_b{-1};
  auto body = [&](std::atomic<int>& index) {
    sw::run(lines.options(), [&] {
      index = sw::this_loop_index();
      sw::spawn([] { cpu_burn(200, nullptr); }, "twin").join();
    });
  };
  std::thread a([&] { body(index_a); });
  std::thread b([&] { body(index_b); });
  a.join();
  b.join();
  INFO(lines.all());
  REQUIRE(index_a != index_b);
  CHECK(lines.count_containing("stallwatch: stall loop=" + std::to_string(index_a.load()) + " ") >= 1);
  CHECK(lines.count_containing("stallwatch: stall loop=" + std::to_string(index_b.load()) + " ") >= 1);
  CHECK_FALSE(watchdog_thread_alive());
}

TEST_CASE("the stall profile aggregates stall stacks in folded format, in memory and on disk") {
  sw::reset_stall_profile();
  Lines lines;
  sw::run(lines.options(), [&] { cpu_burn(250, nullptr); });
  const std::string folded = sw::stall_profile_folded();
  INFO(folded);
  REQUIRE(folded.find("cpu_burn(int, (anonymous namespace)::Lines*)") != std::string::npos);
  // Each line: frames joined by ';', a space, a positive count of microseconds.
  std::istringstream in(folded);
  std::uint64_t total_us = 0;
  for (std::string line; std::getline(in, line);) {
    const auto space = line.rfind(' ');
    REQUIRE(space != std::string::npos);
    total_us += std::stoull(line.substr(space + 1));
  }
  CHECK(total_us >= 150'000);  // the stall lasted ~250 ms, of which > T was seen
  CHECK(total_us <= 2'000'000);

  const std::string path = "watchdog_test_profile.folded";
  sw::write_stall_profile(path);
  std::ifstream file(path);
  std::stringstream content;
  content << file.rdbuf();
  CHECK(content.str() == folded);
  std::remove(path.c_str());
  CHECK_THROWS_AS(sw::write_stall_profile("/nonexistent-dir/x.folded"), std::system_error);
}

// ThreadSanitizer does not support a forked child of a multi-threaded
// process that starts threads (the child's new watchdog): it ends the child
// with status 66. The plain and ASan+UBSan builds run this case.
#if defined(__SANITIZE_THREAD__)
constexpr bool forked_threads_break_tsan = true;
#else
constexpr bool forked_threads_break_tsan = false;
#endif

// Forks on a loop, after `before_fork` and with `after_fork` run by the
// parent once fork() returned. The child answers `child()` ('y' for true)
// and _exits 0; returns its answer, having checked how it exited.
template <class BeforeFork, class AfterFork, class Child>
char ask_forked_child(BeforeFork before_fork, AfterFork after_fork, Child child) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  int status = -1;
  Lines lines;
  sw::run(lines.options(), [&] {
    before_fork();
    const pid_t pid = fork();
    if (pid == 0) {
      const char answer = child() ? 'y' : 'n';
      (void)!write(fds[1], &answer, 1);
      _exit(0);
    }
    after_fork();
    REQUIRE(pid > 0);
    waitpid(pid, &status, 0);
  });
  close(fds[1]);
  char answer = 0;
  CHECK(read(fds[0], &answer, 1) == 1);
  close(fds[0]);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  return answer;
}

TEST_CASE("a forked child keeps working and keeps being watched" * doctest::skip(forked_threads_break_tsan)) {
  const char answer = ask_forked_child([] {}, [] {}, [] {
    const std::uint64_t before = sw::stall_count();
    cpu_burn(200, nullptr);
    // Not sw::sleep_for: the child's copy of the loop cannot run (sync_misuse_test).
    std::this_thread::sleep_for(20ms);
    return sw::stall_count() > before;
  });
  CHECK(answer == 'y');
}

TEST_CASE("a fork does not wait for a busy symbolizer, and the child still names its stalls" *
          doctest::skip(forked_threads_break_tsan)) {
  std::mutex& symbolizer = stallwatch::symbolize::shared_symbolizer().mutex;
  std::promise<void> forked;
  std::thread busy;
  std::chrono::steady_clock::time_point fork_start;
  double fork_ms = -1;
  const auto hold_symbolizer = [&] {
    // As a warm-up reading a large module's debug info holds it: for 3 s,
    // or until the fork has returned.
    busy = std::thread([&, done = forked.get_future()] {
      std::lock_guard held(symbolizer);
      done.wait_for(3s);
    });
    while (symbolizer.try_lock()) {
      symbolizer.unlock();
      std::this_thread::yield();
    }
    fork_start = std::chrono::steady_clock::now();
  };
  const auto release_symbolizer = [&] {
    fork_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - fork_start).count();
    forked.set_value();
    busy.join();
  };
  const char answer = ask_forked_child(hold_symbolizer, release_symbolizer, [] {
    // One stall, burning until it is named (30 s at most): the child's new
    // watchdog thread waits for a CPU before its first sample (under ASan at
    // load 15 a 200 ms burn had ended first, 2 runs in 12, and the samples
    // after it named the wait below), and its fresh symbolizer reads the
    // test's debug info first. Its answer is the report seen: a later sample
    // (one the thread did not answer in time) replaces it.
    bool named = false;
    for (int burnt_ms = 0; burnt_ms < 30'000 && !named; burnt_ms += 200) {
      cpu_burn(200, nullptr);
      named = sw::last_stall_report().find("cpu_burn(int,") != std::string::npos;
    }
    return named;
  });
  CHECK(answer == 'y');
  MESSAGE("fork() with the symbolizer held took " << fork_ms << " ms");
  CHECK(fork_ms < 1000);  // a fork that waited for the symbolizer took 3 s
}

TEST_CASE("stall_count and last_stall_report follow the stalls") {
  Lines lines;
  const std::uint64_t before = sw::stall_count();
  bool named = false;
  sw::run(lines.options(), [&] { named = cpu_burn(120, &lines); });
  INFO(lines.all());
  CHECK(named);
  // One for each stall written: the burn, and the loop's start-up when the
  // machine kept it off a CPU for T.
  CHECK(sw::stall_count() - before == static_cast<std::uint64_t>(lines.count_containing("stallwatch: stall ended")));
  CHECK(lines.count_containing("\"main\" after ") == 1);
  // The last report is the last sample written, with its frames.
  std::string last_sample;
  for (const std::string& line : lines.snapshot()) {
    if (line.rfind("stallwatch: stall loop=", 0) == 0) last_sample = line.substr(0, line.find('\n'));
  }
  CHECK(sw::last_stall_report().rfind(last_sample, 0) == 0);
}

TEST_CASE("the first sample comes within 1.5 T of the slice's start (median of 5 stalls)") {
  Lines lines;
  std::vector<std::string> burners;
  sw::run(lines.options(40), [&] {
    for (int i = 0; i < 5; ++i) {
      // Each in a fiber of its own: its stall is told from the loop's
      // start-up, a stall too when the machine keeps the thread off a CPU
      // for T (at load 15 under TSan, 1 run in 20).
      sw::spawn([&] {
        burners.push_back(" fiber=" + std::to_string(sw::this_fiber_id()) + " ");
        cpu_burn(100, nullptr);
      }).join();
      sw::sleep_for(1ms);
    }
  });
  std::vector<int> first_ms;
  for (const auto& line : lines.snapshot()) {
    const auto burner = [&](const std::string& fiber) { return line.find(fiber) != std::string::npos; };
    if (line.find(" sample 1") == std::string::npos || std::none_of(burners.begin(), burners.end(), burner)) continue;
    const auto at = line.find(" for ");
    if (at != std::string::npos) first_ms.push_back(std::stoi(line.substr(at + 5)));
  }
  INFO(lines.all());
  REQUIRE(first_ms.size() == 5);
  std::sort(first_ms.begin(), first_ms.end());
  MESSAGE("first sample ages at T = 40 ms: " << first_ms[0] << " " << first_ms[1] << " " << first_ms[2] << " "
                                             << first_ms[3] << " " << first_ms[4] << " ms");
  CHECK(first_ms[0] >= 40);
  CHECK(first_ms[2] <= 60);
}

TEST_CASE("each loop's reports reach its own sink, and a name cannot forge a line there") {
  Lines a, b;
  std::atomic<int> index_a{-1}, index_b{-1};
  const std::string forged = "x\"\nstallwatch: stall ended loop=9 fiber=1 \"y\" after 1 ms (cpu 1 ms), 1 sample";
  auto body = [&](Lines& lines, std::atomic<int>& index) {
    sw::run(lines.options(), [&] {
      index = sw::this_loop_index();
      sw::spawn([] { cpu_burn(200, nullptr); }, forged).join();
      sw::spawn([] { throw std::runtime_error("lost\nstallwatch: forged"); }, forged);
      sw::sleep_for(5ms);  // the detached fiber ends with its exception, logged
    });
  };
  std::thread ta([&] { body(a, index_a); });
  std::thread tb([&] { body(b, index_b); });
  ta.join();
  tb.join();
  REQUIRE(index_a != index_b);
  for (auto [mine, own, other] : {std::tuple{&a, index_a.load(), index_b.load()},
                                  std::tuple{&b, index_b.load(), index_a.load()}}) {
    INFO(mine->all());
    CHECK(mine->count_containing("stallwatch: stall loop=" + std::to_string(own) + " ") >= 1);
    CHECK(mine->count_containing("stallwatch: stall ended loop=" + std::to_string(own) + " ") >= 1);
    CHECK(mine->count_containing("ended with an exception nobody will join") == 1);
    CHECK(mine->count_containing("loop=" + std::to_string(other) + " ") == 0);
    for (const std::string& report : mine->snapshot()) {
      std::size_t start = 0;
      for (bool first = true; start <= report.size(); first = false) {
        const std::size_t end = std::min(report.find('\n', start), report.size());
        const std::string line = report.substr(start, end - start);
        CHECK(line.rfind(first ? "stallwatch: " : "  ", 0) == 0);
        CHECK(line.rfind("stallwatch: stall ended loop=9", 0) != 0);
        CHECK(line.rfind("stallwatch: forged", 0) != 0);
        start = end + 1;
      }
    }
  }
}

// Loop A on its own thread, whose sink holds on to its first stall line
// until release() (60 s at most): a slow sink, for as long as a case needs
// one rather than for a fixed time that a loaded machine may outlast.
struct LoopWithHeldSink {
  struct Gate {
    std::mutex mutex;
    std::condition_variable changed;
    bool holding = false;
    bool released = false;
  };
  std::shared_ptr<Gate> gate = std::make_shared<Gate>();
  std::thread loop;

  // Whether the sink still holds the line (and did not give up waiting).
  bool holding() {
    std::lock_guard lock(gate->mutex);
    return gate->holding;
  }
  void release_and_join() {
    {
      std::lock_guard lock(gate->mutex);
      gate->released = true;
    }
    gate->changed.notify_all();
    loop.join();
  }
};

// Starts loop A; returns once its sink holds a line.
void start_loop_with_held_sink(LoopWithHeldSink& a) {
  sw::Options held;
  held.threshold = 40ms;
  held.log_sink = [gate = a.gate](std::string_view line) {
    if (line.find("stallwatch: stall loop=") == std::string::npos) return;
    std::unique_lock lock(gate->mutex);
    if (gate->released) return;
    gate->holding = true;
    gate->changed.notify_all();
    gate->changed.wait_for(lock, 60s, [&] { return gate->released; });
    gate->holding = false;
  };
  a.loop = std::thread([held] { sw::run(held, [] { cpu_burn(150, nullptr); }); });
  std::unique_lock lock(a.gate->mutex);
  a.gate->changed.wait_for(lock, 30s, [&] { return a.gate->holding; });
}

TEST_CASE("a slow sink holds up only its own loop: another loop starts at once") {
  LoopWithHeldSink a;
  start_loop_with_held_sink(a);
  const bool held_before = a.holding();

  // The watchdog's delivery is inside loop A's sink: loop B starts anyway.
  Lines lines;
  const auto asked = std::chrono::steady_clock::now();
  std::chrono::steady_clock::duration started{};
  bool held_as_b_started = false;
  sw::run(lines.options(), [&] {
    started = std::chrono::steady_clock::now() - asked;
    held_as_b_started = a.holding();
  });
  a.release_and_join();
  const auto started_ms = std::chrono::duration_cast<std::chrono::milliseconds>(started).count();
  MESSAGE("loop B started " << started_ms << " ms after it was asked to, while loop A's sink held a line");
  REQUIRE(held_before);
  CHECK(held_as_b_started);
  CHECK(started_ms < 500);
}

TEST_CASE("a slow sink blinds no other loop: loop B's stall is reported while loop A's sink holds a line") {
  LoopWithHeldSink a;
  start_loop_with_held_sink(a);
  const bool held_before = a.holding();

  // Loop B stalls until it is named (cpu_burn), while loop A's sink holds
  // its line: a report of B's that waited for A's sink would never come.
  Lines lines;
  bool seen = false;
  sw::run(lines.options(100), [&] { seen = cpu_burn(400, &lines); });
  const bool held_after = a.holding();
  a.release_and_join();
  INFO(lines.all());
  REQUIRE(held_before);
  CHECK(seen);
  CHECK(held_after);
}

TEST_CASE("sinks never run on a loop thread") {
  std::mutex mutex;
  std::vector<pthread_t> sink_threads;
  sw::Options o;
  o.threshold = 40ms;
  o.log_sink = [&](std::string_view) {
    std::lock_guard lock(mutex);
    sink_threads.push_back(pthread_self());
  };
  pthread_t loop_thread{};
  sw::run(o, [&] {
    loop_thread = pthread_self();
    cpu_burn(100, nullptr);  // a stall: samples and its end
    // A fiber's lost exception: a line written by the loop itself.
    (void)sw::spawn([] { throw std::runtime_error("lost"); });  // dropped: detached
    sw::yield();
  });
  std::lock_guard lock(mutex);
  CHECK(sink_threads.size() >= 3);
  for (const pthread_t t : sink_threads) CHECK_FALSE(pthread_equal(t, loop_thread));
}

namespace {

// Parks its fiber in its destructor, so while an exception unwinds through it.
struct ParksWhileUnwinding {
  int* uncaught_here;
  ~ParksWhileUnwinding() {
    *uncaught_here = std::uncaught_exceptions();
    sw::sleep_for(600ms);
  }
};

}  // namespace

TEST_CASE("each fiber has its own exception state: a fiber parked while unwinding hides no other's stack") {
  Lines lines;
  int a_unwinding = -1, a_caught = -1, b_running = -1;
  sw::run(lines.options(50), [&] {
    auto a = sw::spawn(
        [&] {
          try {
            const ParksWhileUnwinding parks{&a_unwinding};
            throw std::runtime_error("unwinding");
          } catch (const std::runtime_error&) {
            a_caught = std::uncaught_exceptions();
          }
        },
        "unwinder");
    auto b = sw::spawn(
        [&] {
          sw::sleep_for(50ms);  // a is parked in its destructor by now
          b_running = std::uncaught_exceptions();
          cpu_burn(300, nullptr);
        },
        "burner");
    a.join();
    b.join();
  });
  CHECK(a_unwinding == 1);
  CHECK(a_caught == 0);
  CHECK(b_running == 0);
  INFO(lines.all());
  CHECK(lines.count_containing("stallwatch: stall loop=") >= 1);
  CHECK(lines.count_containing("cpu_burn(int,") >= 1);
  CHECK(lines.count_containing("exception was unwinding") == 0);
}

TEST_CASE("time before a loop is watched is never a stall: an old stamp on its record, stallwatch's own start-up") {
  Lines lines;
  const stallwatch::Config config = sw::resolve_config(lines.options(200));
  stallwatch::core::LoopRecord& record = stallwatch::core::claim_loop_record();
  stallwatch::emit::attach_loop(record.index, config);
  // The record says a slice has run for 2 s: what a loop's start-up (or the
  // record's last loop) left there before the watchdog was handed the loop.
  const auto two_s_ago = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>((std::chrono::steady_clock::now() - 2s).time_since_epoch())
          .count());
  record.slice.start_ns.store(two_s_ago);
  record.slice.seq.fetch_add(1);
  record.slice.idle.store(false);
  stallwatch::watchdog::loop_started(record, config);
  std::this_thread::sleep_for(20ms);  // the loop's first slice: far below 200 ms
  record.slice.idle.store(true);
  std::this_thread::sleep_for(300ms);
  stallwatch::watchdog::loop_stopped(record);
  stallwatch::emit::detach_loop(record.index);
  stallwatch::core::release_loop_record(record);
  INFO(lines.all());
  CHECK(lines.count_containing("stallwatch: stall loop=") == 0);
}

TEST_CASE("a slice the watchdog first sees past T (it was kept from ticking) is classified over an interval of its own") {
  Lines lines;
  const stallwatch::Config config = sw::resolve_config(lines.options(50));
  // A thread of its own: no fiber of an earlier loop is left in its thread state.
  std::thread([&] {
    stallwatch::core::LoopRecord& record = stallwatch::core::claim_loop_record();
    stallwatch::emit::attach_loop(record.index, config);
    record.slice.fiber.store(nullptr);  // an earlier loop's, gone
    record.slice.fiber_id.store(0);
    record.slice.idle.store(true);
    stallwatch::watchdog::loop_started(record, config);
    std::this_thread::sleep_for(20ms);
    {
      // Each tick takes this lock: the watchdog first sees the slice 100 ms
      // old, as when the machine gave it no CPU for that long. This thread
      // sleeps throughout; a classification over no time at all called it
      // on-cpu.
      std::lock_guard no_ticks(stallwatch::watchdog::state().mutex);
      record.slice.start_ns.store(now_ns());
      record.slice.seq.fetch_add(1);
      record.slice.idle.store(false);
      std::this_thread::sleep_for(100ms);
    }
    std::this_thread::sleep_for(300ms);
    record.slice.idle.store(true);
    std::this_thread::sleep_for(20ms);
    stallwatch::watchdog::loop_stopped(record);
    stallwatch::emit::detach_loop(record.index);
    stallwatch::core::release_loop_record(record);
  }).join();
  INFO(lines.all());
  CHECK(lines.count_containing("stallwatch: stall loop=") >= 2);
  CHECK(lines.count_containing(" on-cpu for ") == 0);
  CHECK(lines.count_containing(" blocked in clock_nanosleep for ") >= 2);
}
