// A fiber's control block. It lives at the top of the fiber's own stack, so
// spawning allocates no memory beyond the Task; the scheduler's own context
// (the thread's stack) has one too, owned by the Loop.
#pragma once

#include <boost/context/detail/fcontext.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/thread_state.hpp"
#include "core/exception_state.hpp"
#include "core/sanitizer_hooks.hpp"
#include "reactor/epoll_reactor.hpp"
#include "stack/stack_canary.hpp"
#include "stack/stack_pool.hpp"
#include "stallwatch/detail/remote.hpp"
#include "stallwatch/detail/task_base.hpp"

namespace stallwatch::core {

class Loop;

// Why a parked fiber was made ready again.
// abandoned: the primitive it waited on was destroyed.
enum class WakeReason : std::uint8_t { none, notified, timeout, cancelled, abandoned };

struct Fiber {
  static constexpr std::size_t no_heap_index = ~std::size_t{0};

  Fiber() = default;
  Fiber(const Fiber&) = delete;  // stack_canary may point into the fiber itself
  Fiber& operator=(const Fiber&) = delete;

  // What a yield touches comes first, in one cache line.
  boost::context::detail::fcontext_t context = nullptr;  // saved while not running
  Fiber* next_ready = nullptr;       // ready queue (FIFO, intrusive)
  std::uint64_t ready_since_ns = 0;  // woken by a timer or I/O: for loop lag; 0 otherwise
  bool started = true;  // false until a fresh fiber's entry runs; the scheduler is always started
  bool cancel_requested = false;
  bool exceptions_saved = false;  // `exceptions` below holds state to put back when it resumes
  // Checked at every switch out of this fiber (stack/stack_canary.hpp): the
  // word below an unguarded stack, else never_written just after, so that
  // a guarded switch reads no cache line beyond this one.
  const std::uint64_t* stack_canary = &never_written;
  const std::uint64_t never_written = stack::canary_value;
  base::FiberIdentity identity;  // id (0 for the scheduler), `name` below, stack bounds

  Loop* loop = nullptr;
  detail::TaskBase* task = nullptr;  // null for the scheduler
  std::string name;
  stack::Stack stack;
  SanitizerFiberState sanitizer;
  // Its libstdc++ exception state while not running, when it had any
  // (core/exception_state.hpp); off the first cache line, which a switch is
  // kept to: it is read only when exceptions_saved says so.
  ExceptionState exceptions;

  // Parking.
  WakeReason wake = WakeReason::none;
  bool parked = false;
  bool cancellable = true;  // while parked: may cancel() wake it?
  bool wake_first = false;  // a wake-up puts it at the head of the ready queue (FirstInLine)
  detail::WaitQueue* queue = nullptr;  // parked on this queue
  Fiber* queue_prev = nullptr;
  Fiber* queue_next = nullptr;
  reactor::IoWaiter io;  // parked on a descriptor (io.owner: this fiber)
  std::uint64_t deadline_ns = 0;  // 0: no timer
  std::size_t heap_index = no_heap_index;

  // A wake-up from another thread travels in this node through the loop's
  // inbox (one at a time: a fiber waits for one thing). A wake that finds the
  // fiber no longer parked (its wait ended first, by deadline or cancellation)
  // is kept in the flag for Loop::await_remote_wake.
  detail::RemoteNode remote_node;
  bool remote_wake_arrived = false;

  // Every live fiber of the loop, to cancel them when run() ends.
  Fiber* all_prev = nullptr;
  Fiber* all_next = nullptr;
};

// While it lives, a wake-up of the fiber (I/O, a wait queue, a timer) puts
// it at the head of the ready queue instead of the tail: its turn comes at
// the loop's next iteration, not after every fiber already ready. For work
// that must keep pace with the loop whatever its load, such as taking
// connections from a listen queue the kernel bounds. Loop thread.
class FirstInLine {
 public:
  explicit FirstInLine(Fiber* fiber) noexcept : fiber_(fiber), was_(fiber->wake_first) { fiber->wake_first = true; }
  ~FirstInLine() { fiber_->wake_first = was_; }
  FirstInLine(const FirstInLine&) = delete;
  FirstInLine& operator=(const FirstInLine&) = delete;

 private:
  Fiber* fiber_;
  bool was_;
};

}  // namespace stallwatch::core
