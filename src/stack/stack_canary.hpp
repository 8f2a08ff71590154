// The canary that catches an overflow of a fiber stack that has no guard
// page (past the mapping budget, see mapping_budget.hpp and docs/STACKS.md).
//
// A stack carved without a guard keeps an ordinary, writable page below it.
// Its top word, the first one an overflow runs into, holds canary_value; the
// loop checks it at every switch out of the fiber (one load, one compare)
// and ends the process with the guard-page handler's message if it changed.
// A stack with a guard page (and the thread's own stack) checks a word that
// nothing writes, so the switch has no branch on which kind it has.
//
//   fiber->stack_canary = stack::arm_canary(stack);        // at spawn
//   if (*fiber->stack_canary != stack::canary_value) ...   // at each switch out
#pragma once

#include <cstdint>

#include "core/thread_state.hpp"
#include "stack/stack_pool.hpp"

namespace stallwatch::stack {

// Unlikely to be written by an overflowing frame: not a small integer, not a
// pointer into a canonical user address range, not a repeated byte.
inline constexpr std::uint64_t canary_value = 0xc5a1'ab1e'0dd5'7ac0;

// Holds canary_value and is never written: what stacks with a guard page check.
extern const std::uint64_t unwritten_canary;

// The word a switch out of a fiber on `stack` checks: for a stack without a
// guard page, the top word of the page below it, set to canary_value here
// (touching that page: 4 KiB of memory per unguarded stack); otherwise
// unwritten_canary. Loop thread, at spawn.
const std::uint64_t* arm_canary(const Stack& stack) noexcept;

// The canary of `fiber` was overwritten: writes "stallwatch: stack overflow
// in fiber N "name" (stack K KiB); raise STALLWATCH_STACK_KB" to stderr, as
// the guard-page handler does, and ends the process by SIGSEGV. Loop thread,
// at a switch.
[[noreturn, gnu::cold, gnu::noinline]] void die_of_overwritten_canary(const core::FiberIdentity& fiber) noexcept;

}  // namespace stallwatch::stack
