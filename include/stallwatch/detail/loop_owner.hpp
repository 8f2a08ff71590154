// Internal: the owner check of the loop-bound primitives (sync.hpp). Not
// part of the API; may change in any release.
//
// A Semaphore, Event, Mutex or Channel belongs to the loop that created it
// (or, made off any loop, to the first loop that uses it). Every call
// compares that owner with the calling thread's loop: one thread-local load
// and one compare, inlined, on the fast path. A mismatch throws wrong_loop.
#pragma once

#include "stallwatch/detail/task_base.hpp"
#include "stallwatch/export.hpp"

namespace stallwatch {
inline namespace v1 {
namespace detail {

// The loop the calling thread runs (an opaque identity), null on a plain
// thread. initial-exec and constinit: a plain load, no TLS wrapper call.
STALLWATCH_EXPORT extern constinit thread_local const void* tls_current_loop __attribute__((tls_model("initial-exec")));

// The owner of a primitive made off any loop, until a loop adopts it.
STALLWATCH_EXPORT extern const char unowned_primitive;

class LoopOwner {
 public:
  LoopOwner() noexcept : loop_(tls_current_loop != nullptr ? tls_current_loop : &unowned_primitive) {}
  LoopOwner(const LoopOwner&) = delete;
  LoopOwner& operator=(const LoopOwner&) = delete;

  // Throws wrong_loop unless the calling thread runs the owner loop. what
  // names the call ("Event::set").
  void check(const char* what) const {
    if (loop_ != tls_current_loop) [[unlikely]] adopt_or_throw(what);
  }
  // True on the owner loop's thread.
  bool here() const noexcept { return loop_ == tls_current_loop; }

 private:
  // Out of line and cold: binds an unowned primitive to the calling loop, or throws.
  STALLWATCH_EXPORT void adopt_or_throw(const char* what) const;

  mutable const void* loop_;
};

// A loop-bound primitive destroyed while fibers wait on it (queue not
// empty). On the owner loop, each waiter wakes and throws
// primitive_destroyed naming its call; anywhere else the process ends with
// a message naming the primitive (the waiters cannot be reached safely).
STALLWATCH_EXPORT void abandon_waiters(WaitQueue& queue, const LoopOwner& owner, const char* primitive) noexcept;

}  // namespace detail
}  // namespace v1
}  // namespace stallwatch
