// stallwatch/collect.hpp — run several calls concurrently and gather results.
//
// collect(f, g, h) runs each as a fiber and returns a tuple of their results
// in argument order (void results become std::monostate). collect(range,
// workers) runs the callables of a range with at most `workers` at a time
// and returns a vector in input order. In both, every call runs to its end;
// then the first exception in input order is rethrown. resolve(range,
// workers) hands results out as they complete. Loop thread only.
//
//   auto [user, orders] = stallwatch::collect([&] { return fetch_user(id); },
//                                             [&] { return fetch_orders(id); });
//   std::vector<int> sizes = stallwatch::collect(jobs, /*workers=*/8);
//   auto done = stallwatch::resolve(jobs, 8);
//   while (auto size = done->next()) use(*size);
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <exception>
#include <iterator>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "stallwatch/loop.hpp"
#include "stallwatch/sync.hpp"

namespace stallwatch {
inline namespace v1 {

namespace detail {

template <class T>
using collected_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class T>
struct Outcome {
  std::optional<collected_t<T>> value;
  std::exception_ptr error;
};

template <class F>
auto run_to_outcome(F& fn) -> Outcome<task_result_t<F>> {
  Outcome<task_result_t<F>> outcome;
  try {
    if constexpr (std::is_void_v<task_result_t<F>>) {
      fn();
      outcome.value.emplace();
    } else {
      outcome.value.emplace(fn());
    }
  } catch (...) {
    outcome.error = std::current_exception();
  }
  return outcome;
}

template <class Range>
using range_fn_t = std::remove_cvref_t<decltype(*std::begin(std::declval<Range&>()))>;

}  // namespace detail

template <class... F>
auto collect(F&&... fns) -> std::tuple<detail::collected_t<detail::task_result_t<F>>...> {
  detail::require_loop("collect");
  auto tasks = std::make_tuple(spawn([&fns] { return detail::run_to_outcome(fns); }, "collect")...);
  auto outcomes = std::apply([](auto&... task) { return std::make_tuple(task.join()...); }, tasks);
  std::apply(
      [](auto&... outcome) {
        std::exception_ptr first;
        ((first = first ? first : outcome.error), ...);
        if (first) std::rethrow_exception(first);
      },
      outcomes);
  return std::apply([](auto&... outcome) { return std::make_tuple(std::move(*outcome.value)...); }, outcomes);
}

template <class Range>
auto collect(Range& fns, std::size_t workers)
    -> std::vector<detail::collected_t<detail::task_result_t<detail::range_fn_t<Range>>>> {
  using T = detail::task_result_t<detail::range_fn_t<Range>>;
  detail::require_loop("collect");
  std::vector<detail::Outcome<T>> outcomes(static_cast<std::size_t>(std::distance(std::begin(fns), std::end(fns))));
  auto next = std::begin(fns);
  std::size_t next_index = 0;
  auto worker = [&] {
    while (next != std::end(fns)) {
      auto& fn = *next++;
      const std::size_t index = next_index++;
      outcomes[index] = detail::run_to_outcome(fn);
    }
  };
  std::vector<Task<void>> pool;
  const std::size_t count = std::min(workers == 0 ? 1 : workers, outcomes.size());
  pool.reserve(count);
  for (std::size_t i = 0; i < count; ++i) pool.push_back(spawn(worker, "collect worker"));
  for (auto& task : pool) task.join();

  std::vector<detail::collected_t<T>> results;
  results.reserve(outcomes.size());
  for (auto& outcome : outcomes) {
    if (outcome.error) std::rethrow_exception(outcome.error);
    results.push_back(std::move(*outcome.value));
  }
  return results;
}

// Results in completion order; see resolve().
template <class T>
class Resolver {
 public:
  explicit Resolver(std::size_t total) : done_(total == 0 ? 1 : total), remaining_(total) {}
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;
  ~Resolver() {
    for (auto& task : workers_) task.cancel();
    for (auto& task : workers_) {
      try {
        task.join();
      } catch (...) {
        // Cancelled early by the destructor: nobody asked for these results.
      }
    }
  }

  // The next result to complete, or nullopt when all were handed out.
  // Rethrows the exception of a call that failed.
  std::optional<detail::collected_t<T>> next(Deadline deadline = {}) {
    if (remaining_ == 0) return std::nullopt;
    auto outcome = done_.receive(deadline);
    --remaining_;
    if (outcome->error) std::rethrow_exception(outcome->error);
    return std::move(outcome->value);
  }

  // Where workers deliver outcomes, and the workers (filled by resolve()).
  Channel<detail::Outcome<T>>& completions() { return done_; }
  void add_worker(Task<void> worker) { workers_.push_back(std::move(worker)); }

 private:
  Channel<detail::Outcome<T>> done_;
  std::vector<Task<void>> workers_;
  std::size_t remaining_;
};

// Starts the callables of fns with at most `workers` at a time; fns must
// outlive the Resolver.
template <class Range>
auto resolve(Range& fns, std::size_t workers) {
  using T = detail::task_result_t<detail::range_fn_t<Range>>;
  detail::require_loop("resolve");
  const auto total = static_cast<std::size_t>(std::distance(std::begin(fns), std::end(fns)));
  auto resolver = std::make_unique<Resolver<T>>(total);
  struct Cursor {
    decltype(std::begin(fns)) next;
    decltype(std::end(fns)) end;
  };
  auto cursor = std::make_shared<Cursor>(Cursor{std::begin(fns), std::end(fns)});
  const std::size_t count = std::min(workers == 0 ? 1 : workers, total);
  for (std::size_t i = 0; i < count; ++i) {
    resolver->add_worker(spawn(
        [cursor, &done = resolver->completions()] {
          while (cursor->next != cursor->end) {
            auto& fn = *cursor->next++;
            done.send(detail::run_to_outcome(fn));
          }
        },
        "resolve worker"));
  }
  return resolver;
}

}  // namespace v1
}  // namespace stallwatch
