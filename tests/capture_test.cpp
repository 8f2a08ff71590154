// Stack capture in a real signal handler on a plain thread, symbolization of
// known functions, classification from /proc, report formats and the rate
// limiter: the watchdog's parts, without a loop.
#include <doctest/doctest.h>

#include <pthread.h>
#include <sys/syscall.h>
#include <sched.h>
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

#include "base/coarse_clock.hpp"
#include "base/thread_state.hpp"
#include "capture_thread.hpp"
#include "watchdog/capture_signal.hpp"
#include "symbolize/symbolizer.hpp"
#include "watchdog/syscall_names.hpp"
#include "watchdog/thread_status.hpp"

namespace wd = stallwatch::watchdog;
namespace core = stallwatch::core;
namespace base = stallwatch::base;

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

using stallwatch_test::CaptureThread;

std::vector<stallwatch::symbolize::Frame> symbolize_slot(const wd::CaptureSlot& slot) {
  static stallwatch::symbolize::Symbolizer symbolizer;
  std::vector<stallwatch::symbolize::Frame> frames;
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
  auto it = std::find_if(all.begin(), all.end(), [](const stallwatch::symbolize::Frame& f) { return !f.inlined; });
  REQUIRE(it != all.end());
  const stallwatch::symbolize::Frame& top = *it;
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
    base::tls_thread_state.in_switch = 1;
    spin_until_told();
    base::tls_thread_state.in_switch = 0;
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
  stallwatch::symbolize::Symbolizer symbolizer;
  const std::uint64_t warm_start = base::monotonic_ns();
  for (std::uintptr_t start : symbolizer.module_starts()) symbolizer.warm_up_module(start);
  MESSAGE("symbolizer warm-up: " << (base::monotonic_ns() - warm_start) / 1'000'000 << " ms");
  const auto pc = reinterpret_cast<std::uintptr_t>(&known_function);
  const stallwatch::symbolize::Frame& f = symbolizer.symbolize(pc, false).back();
  CHECK(f.function == "(anonymous namespace)::known_function(int)");
  CHECK(f.file.find("tests/capture_test.cpp") != std::string::npos);
  CHECK(f.line > 0);
  CHECK(f.module == "capture_test");
  CHECK(f.build_id.size() >= 16);
  CHECK(f.module_offset > 0);
  // Cached: the same object comes back.
  CHECK(&symbolizer.symbolize(pc, false).back() == &f);

  const stallwatch::symbolize::Frame& libc = symbolizer.symbolize(reinterpret_cast<std::uintptr_t>(&::getpid), false).back();
  CHECK(libc.module.find("libc.so") != std::string::npos);
  INFO("libc frame: " << libc.function << " in " << libc.module);
  CHECK(libc.function.find("getpid") != std::string::npos);

  const stallwatch::symbolize::Frame& nowhere = symbolizer.symbolize(0x10, false).back();
  CHECK(nowhere.function.empty());
  CHECK(nowhere.short_name() == "??+0x10");
}

TEST_CASE("a symbolizer made after another has read libc still names libc's functions") {
  // The first maps libc.so.6 and its debug file to read them (libelf), so
  // /proc/self/maps lists libc a second time; the second must not take that
  // copy for the module (under ASan it did: every libc name came back empty).
  stallwatch::symbolize::Symbolizer first;
  CHECK(first.symbolize(reinterpret_cast<std::uintptr_t>(&::clone), false).back().function.find("clone") !=
        std::string::npos);
  stallwatch::symbolize::Symbolizer second;
  const auto& libc = second.symbolize(reinterpret_cast<std::uintptr_t>(&::getpid), false).back();
  INFO("libc frame: " << libc.function << " in " << libc.module);
  CHECK(libc.module.find("libc.so") != std::string::npos);
  CHECK(libc.function.find("getpid") != std::string::npos);
}

TEST_CASE("a thread sleeping in usleep is blocked in clock_nanosleep; a spinning one is on-cpu") {
  std::atomic<pid_t> tid{0};
  std::atomic<bool> done{false};
  std::thread sleeper([&] {
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    while (!done) usleep(200'000);
  });
  while (tid == 0) std::this_thread::yield();
  wd::ThreadStatus probe(tid);
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
  // Runnable but it used no CPU (its wait for a CPU not yet in the run
  // delay, or a wait that just ended): never "on-cpu" at 0 ms (issue 19).
  CHECK(wd::classify(running, {0, 0}, {100'000, 0}, 100'000'000).describe() == "preempted");
  // Not runnable, not in a system call (a page fault, stopped): blocked.
  wd::SyscallState user;
  user.where = wd::SyscallState::Where::user;
  CHECK(wd::classify(user, {0, 0}, {0, 0}, 100'000'000).describe() ==
        "blocked in the kernel (no system call as sampled)");
  CHECK(wd::syscall_name(SYS_read) == "read");
  CHECK(wd::syscall_name(100000) == "syscall 100000");
}
