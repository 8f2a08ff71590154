// The stack canary (stack_canary.hpp): where it is, and the end of
// the process when a switch finds it overwritten. NOT async-signal-safe
// itself; the message is written by the signal-safe writer the guard-page
// handler uses, so both paths print the same line.
#include "stack/stack_canary.hpp"

#include <signal.h>

#include <cstdlib>

#include "stack/sigsafe/overflow_fault.hpp"

namespace stallwatch::stack {

const std::uint64_t unwritten_canary = canary_value;

const std::uint64_t* canary_of(const Stack& stack) noexcept {
  if (stack.guarded) return &unwritten_canary;
  // The page below an unguarded stack belongs to its slot (stack_pool.cpp)
  // and is written by nothing but an overflow, which reaches this word
  // before any other stack's memory. A reused stack's word is still zero:
  // an overflow of its last fiber would have ended the process.
  return reinterpret_cast<const std::uint64_t*>(stack.lo) - 1;
}

void die_of_overwritten_canary(const core::FiberIdentity& fiber) noexcept {
  sigsafe::write_overflow_message(fiber);
  // The same end as a fault in a guard page: death by SIGSEGV, with a core
  // dump where the system keeps them.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(SIGSEGV, &dfl, nullptr);
  sigset_t segv;
  sigemptyset(&segv);
  sigaddset(&segv, SIGSEGV);
  ::pthread_sigmask(SIG_UNBLOCK, &segv, nullptr);
  ::raise(SIGSEGV);
  std::abort();  // not reached: SIGSEGV's default action ends the process
}

}  // namespace stallwatch::stack
