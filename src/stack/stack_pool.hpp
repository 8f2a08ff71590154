// Fiber stacks: carved from large mmap'd regions, guard pages while the
// process's mapping budget allows, reused through a free list.
// docs/STACKS.md describes the layout and what happens past the budget.
//
//   stallwatch::stack::StackPool pool(64 * 1024);
//   stallwatch::stack::Stack s = pool.acquire();   // top of stack: (char*)s.lo + s.size
//   ...run a fiber on it...
//   pool.release(s);
#pragma once

#include <cstddef>
#include <cstdint>

namespace stallwatch::stack {

struct Stack {
  void* lo = nullptr;    // lowest usable address
  std::size_t size = 0;  // usable bytes; the stack pointer starts at lo + size
  bool guarded = false;  // a PROT_NONE page lies just below lo
};

// One pool per loop; loop thread only. acquire() pops the free list (no system
// call) and maps a new region only when the list is empty; keep_ready() and
// tend() prepare stacks ahead of a burst and trim the list after one. stack_bytes is
// rounded up to whole pages. Destroying the pool unmaps every stack it made.
class StackPool {
 public:
  explicit StackPool(std::size_t stack_bytes);
  ~StackPool();
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;

  // Throws std::system_error (ENOMEM) when no stack can be mapped.
  Stack acquire();
  // Takes back a stack this pool handed out; no system call, no allocation.
  void release(Stack stack) noexcept;

  // Ahead of demand: from now on keep at least `count` free stacks ready
  // (carved, guarded, their top page already in memory), so that a burst of
  // that many new fibers takes no mmap, mprotect or page fault for them. The
  // work is done by tend(), not here. Never lowers an earlier count.
  void keep_ready(std::size_t count);
  // One bounded step of upkeep, for a moment the loop has nothing else to
  // do: readies up to `step` free stacks short of keep_ready's count, else
  // gives back the memory (MADV_DONTNEED) of up to `step` free stacks beyond
  // it (and beyond min_kept_warm), so a pool that grew in a burst returns to
  // its ready reserve. Returns true while work remains. When no stack can
  // be mapped it stops readying (the count falls to what is ready).
  bool tend(std::size_t step) noexcept;
  // Free stacks whose memory is still there (touched by a fiber or readied).
  std::size_t warm_free() const;
  std::size_t free_stacks() const;

  // Free stacks kept warm even when no one asked for a reserve: a loop that
  // runs a few dozen short fibers at a time reuses them without faults.
  static constexpr std::size_t min_kept_warm = 64;

  std::size_t stack_bytes() const { return stack_bytes_; }

 private:
  struct Impl;
  std::size_t stack_bytes_;
  Impl* impl_;
};

// Installs, for the calling thread, an alternate signal stack and (once per
// process) a SIGSEGV/SIGBUS handler that recognises a fault in the running
// fiber's guard page, writes "stallwatch: stack overflow in fiber N \"name\""
// to stderr and ends the process by SIGSEGV; other faults go to the previous
// handler. The alternate stack stays until the matching remove call (calls
// nest; a thread that already has an alternate stack keeps its own). The
// handler reads base::tls_thread_state (fiber id, name, stack bounds).
// Throws std::system_error if the stack cannot be mapped. The calling thread.
void install_overflow_handler_for_thread();
void remove_overflow_handler_for_thread();

}  // namespace stallwatch::stack
