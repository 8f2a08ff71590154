// Waiting on a cross-thread primitive (Future, SharedChannel): a fiber of any
// loop parks, a plain thread blocks on a condition variable of its own.
//
// The protocol, all under the primitive's mutex: a waiter links itself into
// the list; a notifier unlinks it and sets `notified`, then (after releasing
// the mutex) signals the thread or sends the fiber a wake-up through its
// loop's inbox. A fiber whose park ends by deadline or cancellation looks at
// `notified`: unset, it unlinks itself and throws; set, the wake-up is on its
// way and it waits for it (Loop::await_remote_wake), so a stale wake-up never
// lands on a later wait, and the notification counts.
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "base/thread_state.hpp"
#include "core/loop.hpp"
#include "core/parking.hpp"
#include "emit/emitter.hpp"
#include "stallwatch/detail/remote.hpp"

namespace stallwatch {
inline namespace v1 {
namespace detail {

namespace {

void link(CrossWaitList& list, CrossWaiter& waiter) noexcept {
  waiter.next = nullptr;
  waiter.prev = list.last;
  if (list.last != nullptr) list.last->next = &waiter;
  else list.first = &waiter;
  list.last = &waiter;
}

void unlink(CrossWaitList& list, CrossWaiter& waiter) noexcept {
  if (waiter.prev != nullptr) waiter.prev->next = waiter.next;
  else list.first = waiter.next;
  if (waiter.next != nullptr) waiter.next->prev = waiter.prev;
  else list.last = waiter.prev;
  waiter.prev = waiter.next = nullptr;
}

void fiber_wait(core::Loop& loop, std::unique_lock<CrossMutex>& lock, CrossWaitList& list, Deadline deadline,
                const char* what) {
  core::Fiber* self = loop.running();
  core::throw_if_cancel_requested(self, what);
  if (deadline.is_set() && deadline.at <= Clock::now()) core::throw_deadline_exceeded(what);
  CrossWaiter waiter;
  waiter.fiber = self;
  waiter.inbox = loop.inbox();
  link(list, waiter);
  lock.unlock();
  // A notifier may send the wake-up before this park: it waits in the inbox,
  // which only this thread drains, and only once this fiber has switched out.
  const core::WakeReason why = loop.park(core::to_deadline_ns(deadline));
  lock.lock();
  if (why == core::WakeReason::notified) return;
  if (!waiter.notified) {
    unlink(list, waiter);
    core::throw_if_interrupted(why, what);
  }
  lock.unlock();
  loop.await_remote_wake();
  lock.lock();
}

void thread_wait(std::unique_lock<CrossMutex>& lock, CrossWaitList& list, Deadline deadline, const char* what) {
  std::condition_variable wakeup;
  CrossWaiter waiter;
  waiter.wakeup = &wakeup;
  link(list, waiter);
  // The condition variable waits on the std::mutex inside; `lock` keeps owning it.
  std::unique_lock<std::mutex> native(lock.mutex()->native(), std::adopt_lock);
  bool timed_out = false;
  while (!waiter.notified && !timed_out) {
    if (!deadline.is_set()) {
      wakeup.wait(native);
    } else if (wakeup.wait_until(native, deadline.at) == std::cv_status::timeout && !waiter.notified) {
      unlink(list, waiter);
      timed_out = true;
    }
  }
  native.release();
  if (timed_out) core::throw_deadline_exceeded(what);
}

}  // namespace

void cross_wait(std::unique_lock<CrossMutex>& lock, CrossWaitList& list, Deadline deadline, const char* what) {
  if (core::Loop::current() != nullptr) fiber_wait(core::Loop::require(what), lock, list, deadline, what);
  else if (core::Loop::forked_copy() != nullptr) core::Loop::throw_in_forked_child(what);  // nobody would wake it
  else thread_wait(lock, list, deadline, what);
}

void lock_contended(std::mutex& mutex) {
  base::InternalBlockingScope internal;
  mutex.lock();
}

bool WakeBatch::notify_one(CrossWaitList& list) noexcept {
  CrossWaiter* waiter = list.first;
  if (waiter == nullptr) return false;
  unlink(list, *waiter);
  waiter->notified = true;
  if (waiter->fiber == nullptr) {
    // Under the mutex: the thread cannot leave (and take its condition variable) before it has it back.
    waiter->wakeup->notify_one();
    return true;
  }
  // A notified fiber waits for its wake-up, so it stays linked here until deliver().
  waiter->next = first_;
  first_ = waiter;
  return true;
}

void WakeBatch::deliver() noexcept {
  core::Loop* here = core::Loop::current();
  for (CrossWaiter* waiter = std::exchange(first_, nullptr); waiter != nullptr;) {
    // Read everything first: once woken, the waiter may return and its stack move on.
    CrossWaiter* next = waiter->next;
    auto* fiber = static_cast<core::Fiber*>(waiter->fiber);
    RemoteInbox* inbox = waiter->inbox;
    if (fiber->loop == here) here->deliver_wake(fiber);
    else core::Loop::wake_through(inbox, fiber);
    waiter = next;
  }
}

void abandoned_cross_waiters(const char* primitive) noexcept {
  const core::OwnWait own_wait;
  emit::message_and_flush(emit::process_wide, "primitive_destroyed",
                std::string("a ") + primitive +
                    " was destroyed while fibers or threads waited on it; their stacks point into it, so the "
                    "process ends here (destroy it only once nobody waits on it)",
                {{"primitive", std::string(primitive)}});
  std::abort();
}

}  // namespace detail
}  // namespace v1
}  // namespace stallwatch
