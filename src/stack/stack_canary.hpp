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
// with a guard page (and the thread's own stack) checks a word that holds
// zero and is never written, so the switch has no branch on which kind it has.
//
//   fiber->stack_canary = stack::canary_of(stack);               // at spawn
//   if (*fiber->stack_canary != stack::canary_value) ...         // at each switch out
#pragma once

#include <cstdint>

#include "core/thread_state.hpp"
#include "stack/stack_pool.hpp"

namespace stallwatch::stack {

// What an intact canary holds: the zero of a page nobody wrote.
inline constexpr std::uint64_t canary_value = 0;

// Holds canary_value and is never written: what stacks with a guard page check.
extern const std::uint64_t unwritten_canary;

// The word a switch out of a fiber on `stack` checks: for a stack without a
// guard page, the top word of the page below it (its slot's own page, see
// stack_pool.cpp); otherwise unwritten_canary. Writes nothing. Loop thread,
// at spawn.
const std::uint64_t* canary_of(const Stack& stack) noexcept;

// The canary of `fiber` was overwritten: writes "stallwatch: stack overflow
// in fiber N "name" (stack K KiB); raise STALLWATCH_STACK_KB" to stderr, as
// the guard-page handler does, and ends the process by SIGSEGV. Loop thread,
// at a switch.
[[noreturn, gnu::cold, gnu::noinline]] void die_of_overwritten_canary(const core::FiberIdentity& fiber) noexcept;

}  // namespace stallwatch::stack
