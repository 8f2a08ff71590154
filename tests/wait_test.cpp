// Published waits (core/wait_context.hpp, core/wait_interpose.cpp,
// watchdog/wait_capture.cpp): a loop fiber's wait is unwound from another
// thread while it lasts, the wait is not shortened, the owner never leaves
// the wait while a read is in progress, and waits off a loop fiber or inside
// stallwatch's own internals are never published. This executable links the
// static archive, so its own poll/usleep calls go through the interposers.
// The same calls in real processes, timed: tests/probes_test.cpp.
#include <doctest/doctest.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "core/loop_record.hpp"
#include "base/thread_state.hpp"
#include "core/wait_context.hpp"
#include "watchdog/wait_capture.hpp"

namespace core = stallwatch::core;
namespace base = stallwatch::base;
namespace wd = stallwatch::watchdog;
using namespace std::chrono_literals;

namespace {

// See probes_test.cpp: GCC's UBSan misreads stores into the initial-exec
// thread_local from a test; the accessors opt out of that one check.
#define STALLWATCH_TLS_ACCESS __attribute__((noinline, no_sanitize("null")))

// Makes the calling thread look like a loop running fiber `fiber`.
class FakeLoopFiber {
 public:
  STALLWATCH_TLS_ACCESS FakeLoopFiber(core::LoopRecord& record, std::uint64_t fiber) {
    identity_.id = fiber;
    identity_.name = "waiter";
    identity_.name_len = 6;
    stallwatch::detail::tls_current_loop = &record;
    base::tls_thread_state.fiber = &identity_;
  }
  STALLWATCH_TLS_ACCESS ~FakeLoopFiber() {
    base::tls_thread_state = base::ThreadState{};
    stallwatch::detail::tls_current_loop = nullptr;
  }
  FakeLoopFiber(const FakeLoopFiber&) = delete;
  FakeLoopFiber& operator=(const FakeLoopFiber&) = delete;

 private:
  base::FiberIdentity identity_;
};

STALLWATCH_TLS_ACCESS void enter_internal() { ++base::tls_thread_state.internal_depth; }
STALLWATCH_TLS_ACCESS void leave_internal() { --base::tls_thread_state.internal_depth; }

using Clock = std::chrono::steady_clock;

long ms_since(Clock::time_point start) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
}

// The wait under test, in a function of its own so that the unwound stack's
// first frame can be checked against it.
__attribute__((noinline)) int poll_nothing_for(int ms) {
  const int r = poll(nullptr, 0, ms);
  asm volatile("" ::: "memory");  // keep the call a call, not a tail call
  return r;
}

bool inside_poll_nothing_for(std::uintptr_t pc) {
  const auto start = reinterpret_cast<std::uintptr_t>(&poll_nothing_for);
  return pc > start && pc < start + 1024;  // room for sanitizer instrumentation
}

// Runs a fiber on another thread whose wait is `wait()`; unwinds it from this
// thread every few milliseconds while it lasts. Returns how many unwinds
// succeeded; `stack` holds the last.
template <class Wait>
int unwind_while_waiting(core::LoopRecord& record, std::uint64_t slice, Wait wait, wd::PublishedWaitStack& stack,
                         long& waited_ms, int& result) {
  std::atomic<bool> done{false};
  std::thread loop([&] {
    FakeLoopFiber fiber(record, 42);
    const auto start = Clock::now();
    result = wait();
    waited_ms = ms_since(start);
    done = true;
  });
  int unwound = 0;
  while (!done) {
    wd::PublishedWaitStack s;
    if (wd::unwind_published_wait(record, slice, s)) {
      ++unwound;
      stack = s;
    }
    std::this_thread::sleep_for(5ms);
  }
  loop.join();
  return unwound;
}

}  // namespace

TEST_CASE("a loop fiber's poll is unwound from another thread while it lasts, and runs its full time") {
  core::LoopRecord record;
  record.slice.seq.store(7);
  wd::PublishedWaitStack stack;
  long waited_ms = 0;
  int result = -1;
  const int unwound = unwind_while_waiting(record, 7, [] { return poll_nothing_for(200); }, stack, waited_ms, result);
  CHECK(unwound >= 5);
  CHECK(waited_ms >= 199);
  CHECK(result == 0);
  CHECK(stack.fiber_id == 42);
  CHECK(stack.fiber_name == "waiter");
  REQUIRE(!stack.pcs.empty());
  CHECK(inside_poll_nothing_for(stack.pcs[0]));  // frame #0: the caller of poll, not the interposer
  // Once the wait is over nothing is published.
  CHECK_FALSE(wd::unwind_published_wait(record, 7, stack));
}

TEST_CASE("a wait of another slice is not taken") {
  core::LoopRecord record;
  record.slice.seq.store(7);
  wd::PublishedWaitStack stack;
  long waited_ms = 0;
  int result = -1;
  CHECK(unwind_while_waiting(record, 8, [] { return poll_nothing_for(60); }, stack, waited_ms, result) == 0);
  CHECK(waited_ms >= 59);
}

TEST_CASE("stallwatch's own waits and the scheduler's are never published") {
  core::LoopRecord record;
  wd::PublishedWaitStack stack;
  long waited_ms = 0;
  int result = -1;
  const auto internal_poll = [] {
    enter_internal();
    const int r = poll_nothing_for(60);
    leave_internal();
    return r;
  };
  CHECK(unwind_while_waiting(record, 0, internal_poll, stack, waited_ms, result) == 0);
  CHECK(result == 0);

  std::atomic<bool> done{false};
  std::thread scheduler([&] {
    FakeLoopFiber fiber(record, 0);  // fiber 0: the loop's own scheduler
    usleep(60'000);
    done = true;
  });
  int unwound = 0;
  while (!done) {
    unwound += wd::unwind_published_wait(record, 0, stack) ? 1 : 0;
    std::this_thread::sleep_for(5ms);
  }
  scheduler.join();
  CHECK(unwound == 0);
}

TEST_CASE("the owner does not leave its wait while the watchdog reads it") {
  core::WaitContext wait;
  REQUIRE(wait.claim(1));
  wait.slice_seq = 1;
  wait.publish();
  REQUIRE(wait.begin_read());
  CHECK_FALSE(wait.begin_read());  // one reader at a time
  std::atomic<bool> withdrawn{false};
  std::thread owner([&] {
    wait.withdraw();
    withdrawn = true;
  });
  std::this_thread::sleep_for(50ms);
  CHECK_FALSE(withdrawn.load());
  wait.end_read();
  owner.join();
  CHECK(withdrawn.load());
  CHECK_FALSE(wait.begin_read());  // withdrawn: nothing to read
}

TEST_CASE("a wait inside a published wait (a signal handler's) publishes nothing; a stale one is taken back") {
  core::WaitContext wait;
  REQUIRE(wait.claim(5));
  wait.slice_seq = 5;
  wait.publish();
  CHECK_FALSE(wait.claim(5));  // the same slice: the outer wait is still on
  // A wait left by longjmp in slice 5, found again in slice 6.
  CHECK(wait.claim(6));
  wait.slice_seq = 6;
  wait.publish();
  wait.withdraw();
  CHECK(wait.claim(6));
}

#if defined(__x86_64__)
namespace {
std::uint16_t x87_control_word() {
  std::uint16_t cw = 0;
  asm volatile("fnstcw %0" : "=m"(cw));
  return cw;
}
void set_x87_control_word(std::uint16_t cw) { asm volatile("fldcw %0" : : "m"(cw)); }
}  // namespace

TEST_CASE("publishing a wait leaves the caller's floating-point state alone") {
  core::LoopRecord record;
  const std::uint16_t saved = x87_control_word();
  const std::uint16_t unmasked = static_cast<std::uint16_t>(saved & ~0x4);  // divide-by-zero traps
  {
    FakeLoopFiber fiber(record, 42);
    set_x87_control_word(unmasked);
    poll_nothing_for(1);
    CHECK(x87_control_word() == unmasked);  // unw_getcontext's fnstenv would mask it again
    set_x87_control_word(saved);
  }
}
#endif
