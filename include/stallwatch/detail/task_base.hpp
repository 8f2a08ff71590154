// Internal: what the Task/spawn/run templates need from the scheduler.
// Not part of the API; may change in any release.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string_view>

#include "stallwatch/config.hpp"
#include "stallwatch/deadline.hpp"
#include "stallwatch/export.hpp"

namespace stallwatch {
inline namespace v1 {
namespace detail {

// Intrusive FIFO of parked fibers; the scheduler owns its nodes.
struct WaitQueue {
  void* first = nullptr;
  void* last = nullptr;
  bool empty() const { return first == nullptr; }
};

// The heap part of a fiber: the user's function and its outcome. Shared by
// the running fiber and its Task handle; loop-thread only, so the count is plain.
class STALLWATCH_EXPORT TaskBase {
 public:
  virtual ~TaskBase() = default;
  // Runs the user's function and stores its result or exception.
  virtual void invoke() noexcept = 0;

  // Task blocks are recycled through a per-loop cache of small sizes, so a
  // spawn+join pair rarely reaches malloc.
  static void* operator new(std::size_t size);
  static void operator delete(void* block, std::size_t size) noexcept;

  void add_ref() noexcept { ++refs_; }
  void release() noexcept {
    if (--refs_ == 0) delete this;
  }
  int refs() const noexcept { return refs_; }

  bool done = false;
  bool error_observed = false;
  std::exception_ptr error;
  WaitQueue joiners;
  void* fiber = nullptr;  // the running core fiber; null once done
  const void* loop = nullptr;  // the identity of the loop it runs on (see loop_owner.hpp)
  std::uint64_t id = 0;

 private:
  int refs_ = 1;
};

// Throws not_on_loop naming `what` ("collect") unless called from a fiber of
// a running loop: a template built on spawn names itself, not spawn.
STALLWATCH_EXPORT void require_loop(const char* what);
// Starts task as a fiber on the current loop; the fiber holds one reference.
// Throws not_on_loop off a loop. Loop thread.
STALLWATCH_EXPORT void start_task(TaskBase* task, std::string_view name);
// Parks until task is done. Throws deadline_exceeded or cancelled (the caller's
// own cancellation), wrong_loop from any thread but the task's loop's; does
// not rethrow the task's error. Loop thread.
STALLWATCH_EXPORT void join_task(TaskBase* task, Deadline deadline);
// Asks task's fiber to stop: its current or next park throws cancelled.
// Throws wrong_loop from any thread but the task's loop's. Loop thread.
STALLWATCH_EXPORT void cancel_task(TaskBase* task);
// Logs an error that nobody will ever observe (a dropped Task that failed).
STALLWATCH_EXPORT void report_unobserved_error(TaskBase* task) noexcept;
// Creates a loop on the calling thread, runs main as its first fiber until it
// is done, then cancels and drains the remaining fibers. Any thread not
// already running a loop.
STALLWATCH_EXPORT void run_main(const Options& options, TaskBase* main);

// Parks the current fiber on queue until woken or the deadline passes.
// what names the operation in the deadline_exceeded message. Loop thread.
STALLWATCH_EXPORT void park_on(WaitQueue& queue, Deadline deadline, const char* what);
// Moves the first / every parked fiber of queue to the ready queue. Loop thread.
STALLWATCH_EXPORT bool wake_one(WaitQueue& queue);
STALLWATCH_EXPORT void wake_all(WaitQueue& queue);

}  // namespace detail
}  // namespace v1
}  // namespace stallwatch
