// Stack capture in a real signal handler on a plain thread, symbolization of
// known functions, classification from /proc, report formats and the rate
// limiter: the watchdog's parts, without a loop.
#include <doctest/doctest.h>

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/coarse_clock.hpp"
#include "core/thread_state.hpp"
#include "watchdog/capture_signal.hpp"
#include "watchdog/report.hpp"
#include "watchdog/report_limiter.hpp"
#include "watchdog/symbolizer.hpp"
#include "watchdog/syscall_names.hpp"
#include "watchdog/thread_probe.hpp"

namespace wd = stallwatch::watchdog;
namespace core = stallwatch::core;

namespace {

std::atomic<bool> keep_spinning{true};
std::atomic<std::uint64_t> sink_value{0};

// The function every capture must find on the stack.
__attribute__((noinline)) void spin_until_told() {
  std::uint64_t x = 1;
  while (keep_spinning.load(std::memory_order_relaxed)) {
    // Mostly this function's own code, so a capture lands on its own lines
    // rather than on the inlined atomic load.
    for (int i = 0; i < 4096; ++i) x = x * 6364136223846793005ull + 1442695040888963407ull;
  }
  sink_value.store(x);
}

// A thread with a capture slot, running body; tid published once ready.
struct CaptureThread {
  wd::CaptureSlot slot;
  std::atomic<pid_t> tid{0};
  std::thread thread;

  template <class F>
  explicit CaptureThread(F body) {
    thread = std::thread([this, body] {
      wd::prime_unwinder();
      wd::tls_capture_slot = &slot;
      tid.store(static_cast<pid_t>(syscall(SYS_gettid)));
      body();
      wd::tls_capture_slot = nullptr;
    });
    while (tid.load() == 0) std::this_thread::yield();
  }
  ~CaptureThread() { thread.join(); }

  // Requests one capture and waits for it (5 s at most).
  bool capture() {
    const std::uint64_t request = wd::request_capture(slot, tid.load(), wd::default_capture_signal());
    return request != 0 && wd::wait_for_capture(slot, request, 5'000'000'000ull);
  }
};

std::vector<wd::Frame> symbolize_slot(const wd::CaptureSlot& slot) {
  static wd::Symbolizer symbolizer;
  std::vector<wd::Frame> frames;
  for (int i = 0; i < slot.depth; ++i) {
    const auto& at_pc = symbolizer.symbolize(slot.pcs[i], i > 0);
    frames.insert(frames.end(), at_pc.begin(), at_pc.end());
  }
  return frames;
}

__attribute__((noinline)) int known_function(int x) { return x * 3 + static_cast<int>(sink_value.load()); }

}  // namespace

TEST_CASE("the handler captures a busy thread's stack, which symbolizes to the spinning function") {
  wd::install_capture_handler(wd::default_capture_signal());
  keep_spinning = true;
  CaptureThread t([] { spin_until_told(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  REQUIRE(t.capture());
  keep_spinning = false;
  CHECK(t.slot.outcome == wd::CaptureOutcome::captured);
  REQUIRE(t.slot.depth > 1);
  const auto all = symbolize_slot(t.slot);
  // The first frame not inlined is the function that was running.
  auto it = std::find_if(all.begin(), all.end(), [](const wd::Frame& f) { return !f.inlined; });
  REQUIRE(it != all.end());
  const wd::Frame& top = *it;
  INFO("top: " << top.function << " at " << top.file << ":" << top.line);
  CHECK(top.pc == t.slot.pcs[0]);
  CHECK(top.function.find("spin_until_told") != std::string::npos);
  CHECK(top.file.find("tests/capture_test.cpp") != std::string::npos);
  CHECK(top.line > 0);
  CHECK(top.module == "capture_test");
  CHECK(!top.build_id.empty());
}

TEST_CASE("a capture during a context switch is refused and says so") {
  wd::install_capture_handler(wd::default_capture_signal());
  keep_spinning = true;
  CaptureThread t([] {
    core::tls_thread_state.in_switch = 1;
    spin_until_told();
    core::tls_thread_state.in_switch = 0;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(t.capture());
  keep_spinning = false;
  CHECK(t.slot.outcome == wd::CaptureOutcome::in_switch);
  CHECK(t.slot.depth == 0);
}

namespace {
struct SpinsWhileUnwinding {
  ~SpinsWhileUnwinding() { spin_until_told(); }
};
}  // namespace

TEST_CASE("a capture while an exception unwinds is refused and says so") {
  wd::install_capture_handler(wd::default_capture_signal());
  keep_spinning = true;
  std::atomic<bool> caught{false};
  {
    CaptureThread t([&caught] {
      try {
        SpinsWhileUnwinding guard;
        throw std::runtime_error("unwinding");
      } catch (const std::runtime_error&) {
        caught = true;
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    REQUIRE(t.capture());
    keep_spinning = false;
    CHECK(t.slot.outcome == wd::CaptureOutcome::exception);
  }
  CHECK(caught.load());
}

TEST_CASE("capture round trip: signal sent to stack published") {
  wd::install_capture_handler(wd::default_capture_signal());
  keep_spinning = true;
  CaptureThread t([] { spin_until_told(); });
  std::vector<std::uint64_t> latencies;
  for (int i = 0; i < 2000; ++i) {
    REQUIRE(t.capture());
    latencies.push_back(t.slot.published_ns - t.slot.request_sent_ns.load());
  }
  keep_spinning = false;
  std::sort(latencies.begin(), latencies.end());
  const auto p50 = latencies[latencies.size() / 2];
  const auto p99 = latencies[latencies.size() * 99 / 100];
  MESSAGE("capture round trip over 2000 captures: p50 " << p50 / 1000.0 << " us, p99 " << p99 / 1000.0 << " us");
  CHECK(p50 > 0);
}

TEST_CASE("the symbolizer names functions with file:line, module and build-id") {
  wd::Symbolizer symbolizer;
  const std::uint64_t warm_start = core::monotonic_ns();
  for (std::uintptr_t start : symbolizer.module_starts()) symbolizer.warm_up_module(start);
  MESSAGE("symbolizer warm-up: " << (core::monotonic_ns() - warm_start) / 1'000'000 << " ms");
  const auto pc = reinterpret_cast<std::uintptr_t>(&known_function);
  const wd::Frame& f = symbolizer.symbolize(pc, false).back();
  CHECK(f.function == "(anonymous namespace)::known_function(int)");
  CHECK(f.file.find("tests/capture_test.cpp") != std::string::npos);
  CHECK(f.line > 0);
  CHECK(f.module == "capture_test");
  CHECK(f.build_id.size() >= 16);
  CHECK(f.module_offset > 0);
  // Cached: the same object comes back.
  CHECK(&symbolizer.symbolize(pc, false).back() == &f);

  const wd::Frame& libc = symbolizer.symbolize(reinterpret_cast<std::uintptr_t>(&::getpid), false).back();
  CHECK(libc.module.find("libc.so") != std::string::npos);
  CHECK(libc.function.find("getpid") != std::string::npos);

  const wd::Frame& nowhere = symbolizer.symbolize(0x10, false).back();
  CHECK(nowhere.function.empty());
  CHECK(nowhere.short_name() == "??+0x10");
}

TEST_CASE("a thread sleeping in usleep is blocked in clock_nanosleep; a spinning one is on-cpu") {
  std::atomic<pid_t> tid{0};
  std::atomic<bool> done{false};
  std::thread sleeper([&] {
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    while (!done) usleep(200'000);
  });
  while (tid == 0) std::this_thread::yield();
  wd::ThreadProbe probe(tid);
  wd::ThreadTimes start, end;
  REQUIRE(probe.read_times(start));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  wd::SyscallState sys;
  REQUIRE(probe.read_syscall(sys));
  REQUIRE(probe.read_times(end));
  CHECK(sys.where == wd::SyscallState::Where::in_syscall);
  const auto c = wd::classify(sys, start, end, 100'000'000);
  CHECK(c.describe() == "blocked in clock_nanosleep");
  done = true;
  sleeper.join();

  wd::SyscallState running;
  running.where = wd::SyscallState::Where::running;
  CHECK(wd::classify(running, {0, 0}, {90'000'000, 1'000'000}, 100'000'000).describe() == "on-cpu");
  CHECK(wd::classify(running, {0, 0}, {10'000'000, 80'000'000}, 100'000'000).describe() == "preempted");
  CHECK(wd::syscall_name(SYS_read) == "read");
  CHECK(wd::syscall_name(100000) == "syscall 100000");
}

TEST_CASE("text and JSON formats carry the same fields, escaped") {
  wd::StallSample s;
  s.loop = 2;
  s.fiber_id = 7;
  s.fiber_name = "handler \"GET\" /cpu\n";
  s.kind.kind = core::StallKind::blocked;
  s.kind.syscall = "read";
  s.wall_ns = 212'400'000;
  s.cpu_ns = 100'000;
  s.threshold_ns = 50'000'000;
  s.sample = 2;
  wd::Frame f;
  f.pc = 0x55d1c2a41b2e;
  f.function = "busy_hash(std::string const&)";
  f.file = "/src/examples/demo.cpp";
  f.line = 42;
  f.module = "stallwatch-demo";
  f.module_offset = 0x1b2e;
  f.build_id = "abcdef";
  wd::Frame libc = f;
  libc.function = "read";
  libc.file.clear();
  libc.module = "libc.so.6";
  s.frames = {libc, f};
  s.culprit = 1;
  s.stack_id = 0x1234;

  const std::string text = wd::format_sample(s, stallwatch::log_format::text);
  CHECK(text.rfind("stallwatch: stall loop=2 fiber=7 \"handler \\\"GET\\\" /cpu\\x0a\" blocked in read for 212 ms "
                   "in busy_hash(std::string const&) at /src/examples/demo.cpp:42 "
                   "(cpu 0.1 ms, threshold 50 ms) sample 2\n",
                   0) == 0);
  CHECK(text.find("\n  #1 0x000055d1c2a41b2e busy_hash(std::string const&) at /src/examples/demo.cpp:42 "
                  "(stallwatch-demo+0x1b2e)") != std::string::npos);
  CHECK(text.find("build-id libc.so.6=abcdef stallwatch-demo=abcdef") != std::string::npos);

  const std::string json = wd::format_sample(s, stallwatch::log_format::json);
  CHECK(json.find('\n') == std::string::npos);
  CHECK(json.find("\"fiber_name\":\"handler \\\"GET\\\" /cpu\\u000a\"") != std::string::npos);
  CHECK(json.find("\"kind\":\"blocked\",\"syscall\":\"read\"") != std::string::npos);
  CHECK(json.find("\"wall_ms\":212.400") != std::string::npos);
  CHECK(json.find("\"line\":42") != std::string::npos);
  CHECK(json.find(",\"culprit\":{\"function\":\"busy_hash(std::string const&)\",\"file\":\"/src/examples/demo.cpp\","
                  "\"line\":42,\"module\":\"stallwatch-demo\"},") != std::string::npos);

  s.culprit = -1;
  CHECK(wd::format_sample(s, stallwatch::log_format::text).find(" for 212 ms in (no application frame) (cpu") !=
        std::string::npos);
  CHECK(wd::format_sample(s, stallwatch::log_format::json).find(",\"culprit\":null,") != std::string::npos);
  s.culprit = 1;

  s.seen = 3;
  const std::string repeat = wd::format_sample(s, stallwatch::log_format::text);
  CHECK(repeat.find("same stack as an earlier report") != std::string::npos);
  CHECK(repeat.find("#0") == std::string::npos);

  wd::StallEnd e{2, 7, "x", 431'000'000, 430'000'000, 3};
  CHECK(wd::format_end(e, stallwatch::log_format::text) ==
        "stallwatch: stall ended loop=2 fiber=7 \"x\" after 431 ms (cpu 430 ms), 3 samples");
  CHECK(wd::format_suppressed(0, 14, stallwatch::log_format::text) ==
        "stallwatch: suppressed 14 stall reports on loop 0 in the last minute");

  std::string bad;
  wd::append_json_string(bad, std::string("a\xff\xc3\xa9", 4));
  CHECK(bad == "\"a\\u00ff\xc3\xa9\"");
}

TEST_CASE("the rate limiter admits N per minute, counts the rest, deduplicates stacks") {
  wd::ReportLimiter limiter(2);
  const std::uint64_t t0 = 1'000'000'000;
  CHECK(limiter.admit(t0));
  CHECK(limiter.admit(t0 + 1));
  CHECK_FALSE(limiter.admit(t0 + 2));
  CHECK_FALSE(limiter.admit(t0 + 3));
  CHECK(limiter.take_expired_summary(t0 + 10) == 0);
  CHECK(limiter.take_expired_summary(t0 - 10) == 0);  // a clock read before the window opened
  CHECK(limiter.note_stack(5) == 1);
  CHECK(limiter.note_stack(5) == 2);
  CHECK(limiter.take_expired_summary(t0 + wd::ReportLimiter::window_ns) == 2);
  CHECK(limiter.admit(t0 + wd::ReportLimiter::window_ns + 1));
  CHECK(limiter.note_stack(5) == 1);

  wd::ReportLimiter none(0);
  CHECK_FALSE(none.admit(t0));
  CHECK(none.take_pending() == 1);
}
