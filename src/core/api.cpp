// The public scheduler calls (loop.hpp, detail/task_base.hpp) over core::Loop.
// run() itself, which wires a loop to the watchdog, metrics and probes, is
// in src/runtime/.
#include <chrono>
#include <string>

#include "core/fiber.hpp"
#include "core/loop.hpp"
#include "core/loop_record.hpp"
#include "core/parking.hpp"
#include "emit/emitter.hpp"
#include "stallwatch/detail/loop_owner.hpp"
#include "stallwatch/errors.hpp"
#include "stallwatch/loop.hpp"

namespace stallwatch {
inline namespace v1 {

namespace {

core::Fiber* fiber_of(void* node) { return static_cast<core::Fiber*>(node); }

std::string describe_loop(const void* identity) {
  if (identity == nullptr) return "a thread that runs no loop";
  return "loop " + std::to_string(static_cast<const core::LoopRecord*>(identity)->index);
}

// A task is its loop's alone: its joiners queue and its fiber are touched
// without locks. The main task of run() has no owner (run() joins it after
// its loop has ended).
void require_task_loop(const detail::TaskBase* task, const char* what) {
  if (task->loop == nullptr || task->loop == detail::tls_current_loop) [[likely]] return;
  if (core::Loop::forked_copy() != nullptr) core::Loop::throw_in_forked_child(what);
  throw wrong_loop(std::string("stallwatch: ") + what + ": this task runs on " + describe_loop(task->loop) +
                   " and was used from " + describe_loop(detail::tls_current_loop) +
                   "; a Task works only on fibers of its own loop (LoopHandle::submit returns a Future, which "
                   "crosses loops)");
}

}  // namespace

namespace detail {

void* TaskBase::operator new(std::size_t size) {
  if (!core::TaskCache::fits(size)) return ::operator new(size);
  core::Loop* loop = core::Loop::current();
  return loop != nullptr ? loop->task_cache().take(size) : ::operator new(core::TaskCache::rounded(size));
}

void TaskBase::operator delete(void* block, std::size_t size) noexcept {
  core::Loop* loop = core::Loop::current();
  if (loop != nullptr && core::TaskCache::fits(size)) loop->task_cache().give(block, size);
  else ::operator delete(block);
}

void require_loop(const char* what) { core::Loop::require(what); }

void start_task(TaskBase* task, std::string_view name) {
  core::Loop::require("spawn").start(task, name);
  task->loop = tls_current_loop;
}

void join_task(TaskBase* task, Deadline deadline) {
  require_task_loop(task, "Task::join");
  if (task->done) return;
  park_on(task->joiners, deadline, "Task::join");
}

void cancel_task(TaskBase* task) {
  require_task_loop(task, "Task::cancel");
  if (task->done || task->fiber == nullptr) return;
  auto* fiber = static_cast<core::Fiber*>(task->fiber);
  fiber->loop->cancel(fiber);
}

void report_unobserved_error(TaskBase* task) noexcept {
  task->error_observed = true;
  std::string what = "non-standard exception";
  try {
    std::rethrow_exception(task->error);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  try {
    const core::Loop* loop = core::Loop::current();
    emit::message(loop != nullptr ? loop->record().index : emit::process_wide, "fiber_exception",
                  "fiber " + std::to_string(task->id) +
                      " ended with an exception and its Task was dropped without join: " + what,
                  {{"fiber", static_cast<std::int64_t>(task->id)}, {"what", what}});
  } catch (...) {
    // Out of memory while reporting: nothing more can be said.
  }
}

void park_on(WaitQueue& queue, Deadline deadline, const char* what) {
  core::Loop& loop = core::Loop::require(what);
  core::Fiber* self = loop.running();
  core::throw_if_cancel_requested(self, what);
  if (deadline.is_set() && deadline.at <= Clock::now()) core::throw_deadline_exceeded(what);
  self->queue = &queue;
  self->queue_next = nullptr;
  self->queue_prev = fiber_of(queue.last);
  if (queue.last != nullptr) fiber_of(queue.last)->queue_next = self;
  else queue.first = self;
  queue.last = self;

  core::throw_if_interrupted(loop.park(core::to_deadline_ns(deadline)), what);
}

bool wake_one(WaitQueue& queue) {
  if (queue.first == nullptr) return false;
  core::Fiber* fiber = fiber_of(queue.first);
  fiber->loop->detach_from_waits(fiber);
  fiber->loop->make_ready(fiber, core::WakeReason::notified);
  return true;
}

void wake_all(WaitQueue& queue) {
  while (wake_one(queue)) {
  }
}

}  // namespace detail

void yield() { core::Loop::require("yield").yield(); }

void sleep_until(Clock::time_point t) {
  core::Loop& loop = core::Loop::require("sleep");
  core::throw_if_cancel_requested(loop.running(), "sleep");
  if (t <= Clock::now()) {
    loop.yield();
    return;
  }
  if (loop.park(core::to_deadline_ns(Deadline{t})) == core::WakeReason::cancelled) {
    core::throw_cancelled("sleep");
  }
}

std::uint64_t this_fiber_id() noexcept {
  core::Loop* loop = core::Loop::current();
  return loop != nullptr ? loop->running()->identity.id : 0;
}

std::string_view this_fiber_name() noexcept {
  core::Loop* loop = core::Loop::current();
  return loop != nullptr ? std::string_view(loop->running()->name) : std::string_view();
}

bool on_loop() noexcept { return core::Loop::current() != nullptr; }

int this_loop_index() noexcept {
  core::Loop* loop = core::Loop::current();
  return loop != nullptr ? loop->record().index : -1;
}

}  // namespace v1
}  // namespace stallwatch
