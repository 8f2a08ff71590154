// The loop-bound primitives (sync.hpp) used from elsewhere: wrong_loop, and
// destruction while fibers wait on them.
#include <cstdlib>
#include <string>

#include "emit/emitter.hpp"
#include "core/loop.hpp"
#include "core/loop_record.hpp"
#include "stallwatch/detail/loop_owner.hpp"
#include "stallwatch/errors.hpp"

namespace stallwatch {
inline namespace v1 {
namespace detail {

const char unowned_primitive = 0;

namespace {

// The owner identity is the loop's LoopRecord (never freed).
std::string describe(const void* loop) {
  if (loop == nullptr) return "a thread that runs no loop";
  return "loop " + std::to_string(static_cast<const core::LoopRecord*>(loop)->index);
}

std::string primitive_of(const std::string& call) { return call.substr(0, call.find("::")); }

}  // namespace

void LoopOwner::adopt_or_throw(const char* what) const {
  if (core::Loop::forked_copy() != nullptr) core::Loop::throw_in_forked_child(what);
  const void* here = tls_current_loop;
  if (loop_ == &unowned_primitive && here != nullptr) {
    loop_ = here;  // made off any loop: the first loop to use it owns it
    return;
  }
  const std::string call(what);
  const std::string primitive = primitive_of(call);
  if (loop_ == &unowned_primitive) {
    throw wrong_loop("stallwatch: " + call + ": this " + primitive +
                     " belongs to no loop yet and was used from a thread that runs no loop; it works only on "
                     "fibers of one loop (SharedChannel and Future work across threads)");
  }
  throw wrong_loop("stallwatch: " + call + ": this " + primitive + " belongs to " + describe(loop_) +
                   " and was used from " + describe(here) +
                   "; it works only on fibers of its own loop (use SharedChannel, Future or "
                   "LoopHandle::post to cross loops)");
}

void abandon_waiters(WaitQueue& queue, const LoopOwner& owner, const char* primitive) noexcept {
  core::Loop* loop = core::Loop::current();
  if (!owner.here() || loop == nullptr) {
    const core::OwnWait own_wait;
    emit::message_and_flush(emit::process_wide, "primitive_destroyed",
                  std::string("a ") + primitive +
                      " was destroyed on another thread while fibers of its loop waited on it; they cannot be "
                      "woken safely from here, so the process ends",
                  {{"primitive", std::string(primitive)}});
    std::abort();
  }
  // Each waiter wakes, unlinked from the queue that is going away, and throws primitive_destroyed.
  while (!queue.empty()) {
    auto* fiber = static_cast<core::Fiber*>(queue.first);
    loop->detach_from_waits(fiber);
    loop->make_ready(fiber, core::WakeReason::abandoned);
  }
}

}  // namespace detail
}  // namespace v1
}  // namespace stallwatch
