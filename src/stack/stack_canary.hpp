// The canary that catches an overflow of a fiber stack that has no guard
// page (past the mapping budget, see mapping_budget.hpp and docs/STACKS.md).
//
// A stack carved without a guard keeps an ordinary, writable page below it
// that nothing but an overflow ever writes: its top word, the first one an
// overflow runs into, still holds the zero the kernel gave it. The loop
// checks that word at every switch out of the fiber (one load, one compare
// with zero) and ends the process with the guard-page handler's message if
// it changed. The canary is zero rather than a magic value so that it costs
// no memory: a magic value would have to be written, making that page
// resident (4 KiB for each of up to a million unguarded stacks), while
// reading a page nobody wrote maps the kernel's shared zero page. A stack
// with a guard page (and the thread's own stack) checks a word of its fiber
// that holds zero and is never written, so the switch has no branch on which
// kind it has.
//
//   if (auto* below = stack::canary_below(stack)) fiber->stack_canary = below;   // at spawn
//   stack::check_canary(fiber->stack_canary);                    // at each switch out
#pragma once

#include <cstdint>

#include "base/thread_state.hpp"
#include "stack/stack_pool.hpp"

namespace stallwatch::stack {

// What an intact canary holds: the zero of a page nobody wrote.
inline constexpr std::uint64_t canary_value = 0;

// The word a switch out of a fiber on `stack` checks when the stack has no
// guard page: the top word of the page below it (its slot's own page, see
// stack_pool.cpp). Null for a guarded stack: its fiber checks a word of its
// own that holds canary_value and is never written. Writes nothing. Loop
// thread, at spawn.
const std::uint64_t* canary_below(const Stack& stack) noexcept;

// A page that is never accessible, mapped once per process when the first
// loop installs the overflow handler (overflow_handler.cpp).
extern char* canary_tripwire;

// The canary of the running fiber was overwritten: a store into the
// tripwire page, which the SIGSEGV handler recognises and answers as it
// answers a fault in a guard page (the "stallwatch: stack overflow in fiber
// N ..." line naming the fiber still published as running, then death by
// SIGSEGV). A store rather than a call, so that the check costs the switch
// no stack frame and no saved register. Loop thread, at a switch.
[[noreturn, gnu::always_inline]] inline void trip_on_overwritten_canary() noexcept {
  *static_cast<volatile char*>(canary_tripwire) = 0;
  __builtin_unreachable();
}

// The check at a switch out of a fiber: trips when `canary` no longer holds
// canary_value. On x86-64 it is written out as one compare of the word in
// memory with zero and a branch: left to itself GCC loads the word into a
// register first, and finding one costs the switch a saved register more.
[[gnu::always_inline]] inline void check_canary(const std::uint64_t* canary) noexcept {
#if defined(__x86_64__)
  static_assert(canary_value == 0);
  asm goto("cmpq $0, %0\n\tjne %l1" : : "m"(*canary) : "cc" : overwritten);
  return;
overwritten:
  __attribute__((cold));
  trip_on_overwritten_canary();
#else
  if (*canary != canary_value) [[unlikely]] trip_on_overwritten_canary();
#endif
}

}  // namespace stallwatch::stack
