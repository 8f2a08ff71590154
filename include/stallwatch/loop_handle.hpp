// stallwatch/loop_handle.hpp — reach a loop from any thread: post, submit, run_loops.
//
// this_loop() names the calling fiber's loop. The LoopHandle it returns is
// copyable and may be used from any thread: a callback thread of a client
// library, a thread pool, a fiber of another loop. post(F) runs F there as a
// new fiber; submit(F) does the same and returns a Future of F's result.
// A post takes no lock and, while the target loop is busy, makes no system
// call (the loop's eventfd is written only when it sleeps).
//
//   stallwatch::LoopHandle loop = stallwatch::this_loop();
//   kafka_consumer.on_message([loop](Message m) {                 // a client thread
//     loop.post([m = std::move(m)] { handle(m); });               // runs as a fiber on the loop
//   });
//   auto n = other_loop.submit([] { return count_sessions(); }).get();   // parks this fiber
//
//   stallwatch::run_loops(4, [](std::size_t i) { serve(listener_for(i)); });   // one loop per core
//
// A loop stops taking work when its main fiber returns: from then on post and
// submit throw loop_stopped; work queued before that still runs. Nothing is
// dropped without the poster hearing of it.
#pragma once

#include <cstddef>
#include <functional>
#include <type_traits>
#include <utility>

#include "stallwatch/config.hpp"
#include "stallwatch/detail/remote.hpp"
#include "stallwatch/export.hpp"
#include "stallwatch/future.hpp"
#include "stallwatch/loop.hpp"

namespace stallwatch {
inline namespace v1 {

namespace detail {

// post(): an exception F ends with is logged, as for a detached spawn.
template <class F>
class PostedCall final : public PostedTask {
 public:
  explicit PostedCall(F&& fn) : fn_(std::move(fn)) {}
  explicit PostedCall(const F& fn) : fn_(fn) {}
  void invoke() noexcept override {
    try {
      fn_();
    } catch (...) {
      error = std::current_exception();
    }
  }
  void refuse(std::exception_ptr why) noexcept override { report_refused_post(std::move(why)); }
  const char* fiber_name() const noexcept override { return "posted"; }

 private:
  F fn_;
};

// submit(): the result or the exception goes to the Future.
template <class F, class T>
class SubmittedCall final : public PostedTask {
 public:
  SubmittedCall(F&& fn, Promise<T> promise) : fn_(std::move(fn)), promise_(std::move(promise)) {}
  SubmittedCall(const F& fn, Promise<T> promise) : fn_(fn), promise_(std::move(promise)) {}
  void invoke() noexcept override {
    std::exception_ptr error;
    try {
      if constexpr (std::is_void_v<T>) {
        fn_();
        promise_.set_value();
      } else {
        promise_.set_value(fn_());
      }
    } catch (...) {
      error = std::current_exception();
    }
    // Handed over once the handler has ended: the getter then holds the
    // only reference, so the exception is freed on the getter's side.
    if (error) promise_.set_exception(std::move(error));
  }
  void refuse(std::exception_ptr why) noexcept override {
    try {
      promise_.set_exception(std::move(why));
    } catch (...) {
      report_refused_post(std::current_exception());
    }
  }
  const char* fiber_name() const noexcept override { return "submitted"; }

 private:
  F fn_;
  Promise<T> promise_;
};

// Runs body(i) as the main fiber of loop i, i < n, each on its own thread.
STALLWATCH_EXPORT void run_loops_with(const Options& options, std::size_t n,
                                      const std::function<void(std::size_t)>& body);

}  // namespace detail

// A loop, reachable from any thread. Copyable; an empty handle (default
// constructed) throws std::logic_error on post and submit.
class LoopHandle {
 public:
  LoopHandle() noexcept = default;
  explicit LoopHandle(detail::RemoteInbox* adopted) noexcept : inbox_(adopted) {}
  LoopHandle(const LoopHandle& other) noexcept : inbox_(other.inbox_) {
    if (inbox_ != nullptr) detail::inbox_add_ref(inbox_);
  }
  LoopHandle(LoopHandle&& other) noexcept : inbox_(std::exchange(other.inbox_, nullptr)) {}
  LoopHandle& operator=(LoopHandle other) noexcept {
    std::swap(inbox_, other.inbox_);
    return *this;
  }
  ~LoopHandle() {
    if (inbox_ != nullptr) detail::inbox_release(inbox_);
  }

  // Runs fn on the loop as a new fiber (named "posted"), after what was
  // posted before it from the same thread. Returns at once. Throws
  // loop_stopped when the loop has ended (fn is dropped, not run). Any thread.
  template <class F>
  void post(F&& fn) const {
    detail::post_task(inbox_, new detail::PostedCall<std::decay_t<F>>(std::forward<F>(fn)));
  }

  // As post, and the returned Future gets fn's result or exception. Any thread.
  template <class F>
  auto submit(F&& fn) const -> Future<detail::task_result_t<F>> {
    using T = detail::task_result_t<F>;
    Promise<T> promise;
    Future<T> future = promise.get_future();
    detail::post_task(inbox_, new detail::SubmittedCall<std::decay_t<F>, T>(std::forward<F>(fn), std::move(promise)));
    return future;
  }

  // The loop's index (its `loop` label in reports and metrics); -1 when empty.
  int index() const noexcept { return inbox_ != nullptr ? detail::inbox_loop_index(inbox_) : -1; }
  // True once the loop stopped taking posts (its main fiber returned).
  bool stopped() const noexcept { return inbox_ != nullptr && detail::inbox_closed(inbox_); }
  bool valid() const noexcept { return inbox_ != nullptr; }

  friend bool operator==(const LoopHandle& a, const LoopHandle& b) noexcept { return a.inbox_ == b.inbox_; }

 private:
  detail::RemoteInbox* inbox_ = nullptr;
};

// The calling fiber's loop. Throws not_on_loop off a loop.
STALLWATCH_EXPORT LoopHandle this_loop();

// Starts n loops (1–1024) on n threads, runs fn(i) as the main fiber of the
// i-th, and returns once every loop has ended. The n loops take n consecutive
// indices in order, the first free run: in a process with no other loop,
// fn(i) runs on loop i (this_loop_index(), the `loop` label of logs and
// metrics) on thread "stallwatch-<i>"; the thread is always named after its
// loop's index. Rethrows the first exception a main fiber ended with (the
// other loops still run to their end); each later one is logged on its
// loop's sink. Each loop is watched and labelled as one started by run().
// Throws std::invalid_argument for n out of range, config_error for bad options.
template <class F>
void run_loops(const Options& options, std::size_t n, F&& fn) {
  detail::run_loops_with(options, n, [&fn](std::size_t i) { fn(i); });
}

template <class F>
void run_loops(std::size_t n, F&& fn) {
  run_loops(Options{}, n, std::forward<F>(fn));
}

}  // namespace v1
}  // namespace stallwatch
