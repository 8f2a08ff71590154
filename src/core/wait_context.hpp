// WaitContext: the wait a loop fiber is in (sleep, poll, select, epoll_wait
// and their kin), published by the interposers of core/wait_interpose.cpp so
// that the watchdog can take the caller's stack without a signal.
//
// A signal ends those waits early with EINTR (the kernel never restarts them,
// SA_RESTART or not), and sleep(3) then returns the seconds left, 0 for a
// sleep of less than a second's remainder. So for a loop thread stalled in
// one of them the watchdog does not signal: the interposer saved the
// registers at the call (a few stores, no unwinding) and the slice it was
// made in, and the watchdog unwinds from them on its own thread while the
// loop thread is still in the wait.
//
// The stack above the interposer must not change while the watchdog reads
// it, so one word says who holds the context:
//
//   idle ──owner──▶ claiming ──owner──▶ waiting ──watchdog CAS──▶ reading
//     ▲                                   │ ▲                        │
//     └────────────owner CAS──────────────┘ └───watchdog store───────┘
//
// The owner (the loop thread) writes the fields while claiming and leaves the
// wait with a compare-exchange from waiting to idle; only when the watchdog
// is mid-read does that fail, and the owner spins until the read is over.
// A signal handler that waits while its thread is already in a published
// wait finds the word taken and publishes nothing (it gets the signal).
#pragma once

#ifndef UNW_LOCAL_ONLY
#define UNW_LOCAL_ONLY  // stallwatch only ever unwinds its own process
#endif
#include <libunwind.h>
#include <sys/ucontext.h>

#include <atomic>
#include <cstdint>

#include "base/thread_state.hpp"

namespace stallwatch::core {

// Saves into c what an unwinder needs to walk the stack from the calling
// frame: the instruction and stack pointers and the callee-saved registers.
// Inlined, so they are those of the caller's own frame, which must stay in
// place while c is used. On x86-64 a few stores: unw_getcontext costs more
// and, through fnstenv, leaves every x87 exception masked in the caller.
#if defined(__x86_64__)
inline __attribute__((always_inline)) void save_unwind_registers(unw_context_t& c) noexcept {
  greg_t* const g = c.uc_mcontext.gregs;
  void* scratch;
  asm volatile(
      "movq %%rbx, %c[rbx](%[g])\n\t"
      "movq %%rbp, %c[rbp](%[g])\n\t"
      "movq %%r12, %c[r12](%[g])\n\t"
      "movq %%r13, %c[r13](%[g])\n\t"
      "movq %%r14, %c[r14](%[g])\n\t"
      "movq %%r15, %c[r15](%[g])\n\t"
      "movq %%rsp, %c[rsp](%[g])\n\t"
      "leaq 0(%%rip), %[scratch]\n\t"
      "movq %[scratch], %c[rip](%[g])"
      : [scratch] "=&r"(scratch)
      : [g] "r"(g), [rbx] "i"(REG_RBX * sizeof(greg_t)), [rbp] "i"(REG_RBP * sizeof(greg_t)),
        [r12] "i"(REG_R12 * sizeof(greg_t)), [r13] "i"(REG_R13 * sizeof(greg_t)),
        [r14] "i"(REG_R14 * sizeof(greg_t)), [r15] "i"(REG_R15 * sizeof(greg_t)),
        [rsp] "i"(REG_RSP * sizeof(greg_t)), [rip] "i"(REG_RIP * sizeof(greg_t))
      : "memory");
}
#else
inline __attribute__((always_inline)) void save_unwind_registers(unw_context_t& c) noexcept { unw_getcontext(&c); }
#endif



class WaitContext {
 public:
  enum State : std::uint32_t { idle = 0, claiming = 1, waiting = 2, reading = 3 };

  // What the owner publishes. Written only while the word says claiming;
  // read by the watchdog only while it says reading.
  unw_context_t registers{};              // at the call, in the interposer's frame
  std::uint64_t slice_seq = 0;            // the loop's slice when the wait began
  const void* caller_return = nullptr;    // the interposer's return address
  const base::FiberIdentity* fiber = nullptr;   // alive: it is the one waiting

  // Loop thread: claims the context for a wait that begins. False when it is
  // taken (a wait interrupted by a signal handler that waits too, or being
  // read), and then nothing may be written. A context left waiting from an
  // earlier slice (its wait was left by longjmp, never by returning) is
  // taken back.
  bool claim(std::uint64_t current_slice) noexcept {
    std::uint32_t s = state_.load(std::memory_order_relaxed);
    if (s == idle) {
      state_.store(claiming, std::memory_order_relaxed);
    } else if (s != waiting || slice_seq == current_slice ||
               !state_.compare_exchange_strong(s, claiming, std::memory_order_acquire, std::memory_order_relaxed)) {
      return false;
    }
    // A handler running between here and publish() finds the word taken.
    std::atomic_signal_fence(std::memory_order_seq_cst);
    return true;
  }

  // Loop thread, after claim() and the fields: the wait is now readable.
  void publish() noexcept { state_.store(waiting, std::memory_order_release); }

  // Loop thread, after the wait returned: takes the context back, waiting
  // for a read in progress to end (tens of microseconds, rare).
  void withdraw() noexcept {
    std::uint32_t expected = waiting;
    while (!state_.compare_exchange_strong(expected, idle, std::memory_order_acquire, std::memory_order_relaxed)) {
      expected = waiting;
      pause_while_read();
    }
  }

  // Watchdog: true when a wait is published, which then stays in place (its
  // caller's stack unchanged) until end_read().
  bool begin_read() noexcept {
    std::uint32_t expected = waiting;
    return state_.compare_exchange_strong(expected, reading, std::memory_order_acquire, std::memory_order_relaxed);
  }
  void end_read() noexcept { state_.store(waiting, std::memory_order_release); }

  // A loop that takes over this record starts with no wait: a thread that
  // died (or did not survive a fork) may have left one. Before the loop runs.
  // Defined beside the interposers (core/wait_interpose.cpp) so that every
  // program that runs a loop links them, also from the static archive when
  // a sanitizer runtime that defines the same names comes first.
  void reset() noexcept;

 private:
  static void pause_while_read() noexcept;

  std::atomic<std::uint32_t> state_{idle};
};

}  // namespace stallwatch::core
