// The stack canary (stack_canary.hpp): where it is for each stack. The
// tripwire page is mapped by overflow_handler.cpp, and a fault in it is
// answered by sigsafe/overflow_fault.cpp.
#include "stack/stack_canary.hpp"

namespace stallwatch::stack {

char* canary_tripwire = nullptr;

const std::uint64_t* canary_below(const Stack& stack) noexcept {
  if (stack.guarded) return nullptr;
  // The page below an unguarded stack belongs to its slot (stack_pool.cpp)
  // and is written by nothing but an overflow, which reaches this word
  // before any other stack's memory. A reused stack's word is still zero:
  // an overflow of its last fiber would have ended the process.
  return reinterpret_cast<const std::uint64_t*>(stack.lo) - 1;
}

}  // namespace stallwatch::stack
