// Per-thread state that the signal handlers (stack capture, stack overflow)
// and the blocking-call interposers read: the running fiber and whether a
// switch is half done. initial-exec TLS: reading it never allocates, so a
// handler may touch it. Written only by the owning thread (the scheduler).
#pragma once

#include <csignal>
#include <cstddef>
#include <cstdint>

namespace stallwatch::base {

// A fiber as the signal handlers and probes see it. It is part of the Fiber,
// so a switch publishes the running one with a single pointer store.
struct FiberIdentity {
  std::uint64_t id = 0;          // 0 = the scheduler itself
  const char* name = nullptr;    // owned by the fiber, may be null
  std::size_t name_len = 0;
  std::uintptr_t stack_lo = 0;   // lowest usable address of its stack
  std::uintptr_t stack_hi = 0;   // and one past its top (0 on the thread's own stack)
};

struct ThreadState {
  volatile sig_atomic_t in_switch = 0;    // a context switch is half done: do not unwind
  const FiberIdentity* fiber = nullptr;   // the running fiber, set while a loop runs
  int internal_depth = 0;  // > 0 while stallwatch itself blocks (epoll_wait, eventfd); never across a park
};

// constinit: no dynamic initialisation, so no TLS wrapper (and no false
// UBSan "null pointer" report on stores through it).
extern constinit thread_local ThreadState tls_thread_state __attribute__((tls_model("initial-exec")));

// True when the calling thread is running a fiber of a loop, outside
// stallwatch's own blocking calls. (allow_blocking scopes belong to fibers:
// the interposers check those in src/blocking/.)
inline bool on_loop_fiber() {
  const ThreadState& s = tls_thread_state;
  return s.fiber != nullptr && s.fiber->id != 0 && s.internal_depth == 0;
}

// The calling thread's running fiber (null off a loop). A plain load of one
// field: through a reference to the whole initial-exec thread_local, GCC's
// UBSan now and then sees a null pointer.
inline const FiberIdentity* current_fiber() { return tls_thread_state.fiber; }

// The running fiber's id; 0 on the scheduler or off any loop.
inline std::uint64_t running_fiber_id() {
  const FiberIdentity* fiber = tls_thread_state.fiber;
  return fiber != nullptr ? fiber->id : 0;
}

// Marks stallwatch's own blocking calls so the interposers never flag them.
class InternalBlockingScope {
 public:
  InternalBlockingScope() { ++tls_thread_state.internal_depth; }
  ~InternalBlockingScope() { --tls_thread_state.internal_depth; }
  InternalBlockingScope(const InternalBlockingScope&) = delete;
  InternalBlockingScope& operator=(const InternalBlockingScope&) = delete;
};

}  // namespace stallwatch::base
