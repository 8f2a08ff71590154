// stallwatch/in_thread.hpp — run a blocking call on the offload thread pool.
//
// The calling fiber parks while a pool thread runs the call; the loop keeps
// running other fibers. The pool is process-wide and bounded (at most
// max(4, 2 × cores) threads, started on demand); calls beyond that queue.
// Completion wakes the loop through its eventfd: no polling. The result or
// exception comes back to the caller. Loop thread only.
//
// The wait cannot be cancelled or given a deadline: the call runs to its end
// (a thread cannot be interrupted safely), then a pending cancellation takes
// effect at the fiber's next park.
//
//   std::string body = stallwatch::in_thread([&] { return legacy_http_get(url); });
#pragma once

#include <exception>
#include <functional>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include "stallwatch/export.hpp"

namespace stallwatch {
inline namespace v1 {

namespace detail {

// One offloaded call; lives on the parked fiber's stack.
struct OffloadJob {
  void (*run)(OffloadJob*) = nullptr;
  void* fiber = nullptr;  // set by offload()
  OffloadJob* next = nullptr;
};

// Queues job on the pool and parks the calling fiber until it has run.
// Throws not_on_loop off a loop. Loop thread.
STALLWATCH_EXPORT void offload(OffloadJob& job);

template <class F, class R>
struct TypedOffloadJob : OffloadJob {
  explicit TypedOffloadJob(F&& f) : fn(std::move(f)) { run = &TypedOffloadJob::invoke; }
  static void invoke(OffloadJob* base) {
    auto* self = static_cast<TypedOffloadJob*>(base);
    try {
      if constexpr (std::is_void_v<R>) {
        self->fn();
      } else {
        self->result.emplace(self->fn());
      }
    } catch (...) {
      self->error = std::current_exception();
    }
  }
  F fn;
  std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> result{};
  std::exception_ptr error;
};

}  // namespace detail

// Runs fn(args...) on a pool thread; returns its result or rethrows.
template <class F, class... Args>
auto in_thread(F&& fn, Args&&... args) -> std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...> {
  using R = std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>;
  auto call = [fn = std::forward<F>(fn), ... args = std::forward<Args>(args)]() mutable -> R {
    return std::invoke(std::move(fn), std::move(args)...);
  };
  detail::TypedOffloadJob<decltype(call), R> job(std::move(call));
  detail::offload(job);
  if (job.error) std::rethrow_exception(job.error);
  if constexpr (!std::is_void_v<R>) return std::move(*job.result);
}

}  // namespace v1
}  // namespace stallwatch
