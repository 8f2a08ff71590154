// Internal: what the LoopHandle, Future and SharedChannel templates need to
// cross threads. Not part of the API; may change in any release.
//
// Two mechanisms. A loop's inbox (RemoteInbox, defined in src/core) takes
// posted tasks and fiber wake-ups from any thread, lock-free. A CrossWaitList
// holds the fibers (of any loop) and plain threads waiting on one
// cross-thread primitive, under that primitive's own std::mutex.
#pragma once

#include <condition_variable>
#include <exception>
#include <mutex>

#include "stallwatch/deadline.hpp"
#include "stallwatch/detail/task_base.hpp"
#include "stallwatch/export.hpp"

namespace stallwatch {
inline namespace v1 {
namespace detail {

// A loop's inbox: opaque here, reference-counted, alive while a handle holds it.
class RemoteInbox;

STALLWATCH_EXPORT void inbox_add_ref(RemoteInbox* inbox) noexcept;
STALLWATCH_EXPORT void inbox_release(RemoteInbox* inbox) noexcept;
// The calling fiber's loop's inbox, one reference taken. Throws not_on_loop.
STALLWATCH_EXPORT RemoteInbox* current_inbox();
// The loop's index (its `loop` label) and whether it has stopped taking posts.
STALLWATCH_EXPORT int inbox_loop_index(const RemoteInbox* inbox) noexcept;
STALLWATCH_EXPORT bool inbox_closed(const RemoteInbox* inbox) noexcept;

// One entry of an inbox: a task to start as a fiber, or a fiber to wake.
struct RemoteNode {
  RemoteNode* next = nullptr;
  void* target = nullptr;  // the PostedTask, or the core fiber to wake
  bool is_task = false;
};

// A task posted to a loop: started there as a new fiber. The poster's
// reference passes to the loop with the node.
class STALLWATCH_EXPORT PostedTask : public TaskBase {
 public:
  PostedTask() {
    node.target = this;
    node.is_task = true;
  }
  // The loop ended abnormally before the task could start (run() threw):
  // the task hears why instead of vanishing.
  virtual void refuse(std::exception_ptr why) noexcept = 0;
  // The fiber name the task runs under.
  virtual const char* fiber_name() const noexcept = 0;

  RemoteNode node;
};

// Queues task on inbox's loop, which starts it as a fiber. Takes the caller's
// reference. Throws loop_stopped (and drops the task) once the loop has ended.
// Any thread.
STALLWATCH_EXPORT void post_task(RemoteInbox* inbox, PostedTask* task);
// Logs a post that a loop ending abnormally could not run (never silent).
STALLWATCH_EXPORT void report_refused_post(std::exception_ptr why) noexcept;

// Waits for a contended CrossMutex, marked as stallwatch's own blocking so the
// blocking-call probes do not report it. Any thread.
STALLWATCH_EXPORT void lock_contended(std::mutex& mutex);

// The mutex of a cross-thread primitive. Uncontended it is std::mutex's
// try_lock; contended, a loop fiber waits for it as stallwatch's own blocking
// (never held across a wait or a call to user code but T's moves, so the
// wait is short), not as the contended pthread_mutex_lock the probes report.
class CrossMutex {
 public:
  void lock() {
    if (!mutex_.try_lock()) lock_contended(mutex_);
  }
  bool try_lock() { return mutex_.try_lock(); }
  void unlock() { mutex_.unlock(); }
  std::mutex& native() { return mutex_; }

 private:
  std::mutex mutex_;
};

// A fiber or plain thread waiting on a cross-thread primitive. Lives on the
// waiter's stack; linked into the primitive's list under its mutex.
struct CrossWaiter {
  CrossWaiter* prev = nullptr;
  CrossWaiter* next = nullptr;
  void* fiber = nullptr;              // the core fiber; null for a plain thread
  RemoteInbox* inbox = nullptr;       // the fiber's loop
  bool notified = false;              // dequeued by a notifier (under the mutex)
  std::condition_variable* wakeup = nullptr;  // a plain thread's
};

struct CrossWaitList {
  CrossWaiter* first = nullptr;
  CrossWaiter* last = nullptr;
  bool empty() const { return first == nullptr; }
};

// Fiber wake-ups taken under a primitive's mutex and delivered after it is
// released (declare the batch before the lock): a wake may write the target
// loop's eventfd, which is better not done holding the lock.
class STALLWATCH_EXPORT WakeBatch {
 public:
  WakeBatch() = default;
  WakeBatch(const WakeBatch&) = delete;
  WakeBatch& operator=(const WakeBatch&) = delete;
  ~WakeBatch() {
    if (first_ != nullptr) deliver();
  }

  // Dequeues the first / every waiter of list and marks it notified. Threads
  // are signalled at once; fibers are woken when the batch is destroyed.
  // The primitive's mutex is held.
  bool notify_one(CrossWaitList& list) noexcept;
  void notify_all(CrossWaitList& list) noexcept {
    while (notify_one(list)) {
    }
  }

 private:
  void deliver() noexcept;
  CrossWaiter* first_ = nullptr;
};

// Waits on list until a notifier dequeues this waiter. lock holds the
// primitive's mutex on entry and on return. A fiber parks (any loop); a plain
// thread blocks. Throws deadline_exceeded past the deadline and cancelled when
// the fiber is cancelled, the waiter removed from the list; a notification
// that raced with either wins (the call returns normally).
STALLWATCH_EXPORT void cross_wait(std::unique_lock<CrossMutex>& lock, CrossWaitList& list, Deadline deadline,
                                  const char* what);

// A cross-thread primitive destroyed while fibers or threads wait on it:
// logs a line naming it and ends the process (their stacks point into it).
[[noreturn]] STALLWATCH_EXPORT void abandoned_cross_waiters(const char* primitive) noexcept;

}  // namespace detail
}  // namespace v1
}  // namespace stallwatch
