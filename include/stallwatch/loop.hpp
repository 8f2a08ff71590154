// stallwatch/loop.hpp — run a loop, spawn fibers, yield, sleep.
//
// run() turns the calling thread into a loop: its function becomes the main
// fiber, and every fiber it spawns runs on the same thread, one at a time,
// until it parks (join, sleep, wait, I/O) or yields. Several threads may each
// run their own loop. Everything here except run() must be called from a
// fiber of a running loop, or it throws stallwatch::not_on_loop.
//
//   int main() {
//     return stallwatch::run([] {
//       auto a = stallwatch::spawn([] { stallwatch::sleep_for(10ms); return 1; }, "a");
//       auto b = stallwatch::spawn([] { return 2; }, "b");
//       return a.join() + b.join() == 3 ? 0 : 1;
//     });
//   }
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

#include "stallwatch/config.hpp"
#include "stallwatch/deadline.hpp"
#include "stallwatch/detail/task_base.hpp"
#include "stallwatch/errors.hpp"
#include "stallwatch/export.hpp"

namespace stallwatch {
inline namespace v1 {

namespace detail {

template <class T>
class TaskResult : public TaskBase {
 public:
  T take() { return std::move(*value_); }

 protected:
  std::optional<T> value_;
};

template <>
class TaskResult<void> : public TaskBase {
 public:
  void take() {}
};

template <class F, class T>
class TaskImpl final : public TaskResult<T> {
 public:
  explicit TaskImpl(F&& fn) : fn_(std::move(fn)) {}
  explicit TaskImpl(const F& fn) : fn_(fn) {}

  void invoke() noexcept override {
    try {
      if constexpr (std::is_void_v<T>) {
        fn_();
      } else {
        this->value_.emplace(fn_());
      }
    } catch (...) {
      this->error = std::current_exception();
    }
  }

 private:
  F fn_;
};

template <class F>
using task_result_t = std::invoke_result_t<std::decay_t<F>&>;

}  // namespace detail

// A handle to a spawned fiber. Move-only. Dropping it detaches the fiber,
// which runs on; an error it then ends with is logged, never lost.
template <class T>
class Task {
 public:
  Task() = default;
  explicit Task(detail::TaskResult<T>* impl) : impl_(impl) {}
  Task(Task&& other) noexcept : impl_(std::exchange(other.impl_, nullptr)) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      reset();
      impl_ = std::exchange(other.impl_, nullptr);
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { reset(); }

  // Parks the calling fiber until the task ends, then returns its value or
  // rethrows its exception. Once per task. Throws deadline_exceeded past the
  // deadline (the task keeps running), cancelled if the caller is cancelled,
  // and wrong_loop from a fiber of another loop or a plain thread (a Future
  // from LoopHandle::submit crosses loops).
  T join(Deadline deadline = {}) {
    if (impl_ == nullptr) throw std::logic_error("stallwatch: Task::join on an empty or joined task");
    detail::join_task(impl_, deadline);
    auto* impl = std::exchange(impl_, nullptr);
    struct Release {
      detail::TaskBase* p;
      ~Release() { p->release(); }
    } release{impl};
    impl->error_observed = true;
    if (impl->error) std::rethrow_exception(impl->error);
    return impl->take();
  }

  // Asks the fiber to stop: the park it is in, or its next one, throws
  // stallwatch::cancelled inside it. join() then rethrows that. Throws
  // wrong_loop off the task's own loop.
  void cancel() {
    if (impl_ != nullptr) detail::cancel_task(impl_);
  }

  bool done() const { return impl_ != nullptr && impl_->done; }
  bool valid() const { return impl_ != nullptr; }
  std::uint64_t id() const { return impl_ != nullptr ? impl_->id : 0; }

 private:
  void reset() {
    if (impl_ == nullptr) return;
    if (impl_->done && impl_->error && !impl_->error_observed) detail::report_unobserved_error(impl_);
    std::exchange(impl_, nullptr)->release();
  }

  detail::TaskResult<T>* impl_ = nullptr;
};

// Starts fn as a new fiber on the current loop and returns its handle. The
// name appears in stall reports and every other line about the fiber; its
// first 64 bytes are kept (cut on a character boundary). Loop thread;
// allocates once.
template <class F>
auto spawn(F&& fn, std::string_view name = {}) -> Task<detail::task_result_t<F>> {
  using T = detail::task_result_t<F>;
  auto* impl = new detail::TaskImpl<std::decay_t<F>, T>(std::forward<F>(fn));
  try {
    detail::start_task(impl, name);
  } catch (...) {
    impl->release();
    throw;
  }
  return Task<T>(impl);
}

// Runs fn as the main fiber of a new loop on the calling thread and returns
// its result or rethrows its exception. When fn returns, fibers still running
// are cancelled and drained. Throws config_error for invalid options.
template <class F>
auto run(const Options& options, F&& fn) -> detail::task_result_t<F> {
  using T = detail::task_result_t<F>;
  auto* impl = new detail::TaskImpl<std::decay_t<F>, T>(std::forward<F>(fn));
  Task<T> task(impl);
  detail::run_main(options, impl);
  return task.join();
}

template <class F>
auto run(F&& fn) -> detail::task_result_t<F> {
  return run(Options{}, std::forward<F>(fn));
}

// Lets every other ready fiber run once, then returns. A cancellation point.
// With no other fiber ready it returns at once, but a run of yields still
// gives the loop its turn (due timers, I/O) as a run of switches does.
STALLWATCH_EXPORT void yield();

// Parks the calling fiber; the loop runs others meanwhile. Cancellation points.
// A duration too long for the clock (seconds::max()) sleeps until cancelled.
STALLWATCH_EXPORT void sleep_until(Clock::time_point t);
template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> d) {
  sleep_until(detail::saturating_add(Clock::now(), d));
}

// The running fiber's id (0 off a loop) and name.
STALLWATCH_EXPORT std::uint64_t this_fiber_id() noexcept;
STALLWATCH_EXPORT std::string_view this_fiber_name() noexcept;
// True on a thread that is running a loop.
STALLWATCH_EXPORT bool on_loop() noexcept;
// The index of this thread's loop (the `loop` label), -1 off a loop.
STALLWATCH_EXPORT int this_loop_index() noexcept;

}  // namespace v1
}  // namespace stallwatch
