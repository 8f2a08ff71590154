// stallwatch/future.hpp — a one-shot result that crosses loops and threads.
//
// A Promise<T> is fulfilled once, from any thread or loop; its Future<T>
// hands the value (or the exception) to one getter, on any thread or loop.
// get() parks a calling fiber (its loop runs other fibers meanwhile) and
// blocks a calling plain thread. LoopHandle::submit returns one.
//
//   stallwatch::Promise<int> promise;
//   stallwatch::Future<int> answer = promise.get_future();
//   std::thread([p = std::move(promise)]() mutable { p.set_value(42); }).detach();
//   int v = answer.get(stallwatch::deadline_after(1s));   // parks or blocks
//
// A Promise destroyed unfulfilled breaks its Future: get() throws
// std::future_error (broken_promise).
#pragma once

#include <exception>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

#include "stallwatch/deadline.hpp"
#include "stallwatch/detail/remote.hpp"

namespace stallwatch {
inline namespace v1 {

namespace detail {

template <class T>
struct FutureState {
  CrossMutex mutex;
  CrossWaitList getters;
  bool ready = false;
  std::conditional_t<std::is_void_v<T>, bool, std::optional<T>> value{};
  std::exception_ptr error;
};

}  // namespace detail

template <class T>
class Promise;

// The getting side. Move-only; get() once.
template <class T>
class Future {
 public:
  Future() = default;
  Future(Future&&) noexcept = default;
  Future& operator=(Future&&) noexcept = default;

  // Waits until the promise is fulfilled, then returns its value or rethrows
  // its exception; the future is then empty. A fiber parks, a plain thread
  // blocks. Throws deadline_exceeded past the deadline and cancelled when the
  // calling fiber is cancelled (the future stays valid: get may be called
  // again); std::future_error (no_state) on an empty future.
  T get(Deadline deadline = {}) {
    if (!state_) throw std::future_error(std::future_errc::no_state);
    {
      std::unique_lock<detail::CrossMutex> lock(state_->mutex);
      while (!state_->ready) detail::cross_wait(lock, state_->getters, deadline, "Future::get");
    }
    std::shared_ptr<detail::FutureState<T>> state = std::move(state_);
    // The exception leaves the state, so its last reference drops on this
    // side: the promise's side may free the state at any time, and
    // exception_ptr's count (in uninstrumented libstdc++) is invisible to TSan.
    if (state->error) std::rethrow_exception(std::exchange(state->error, nullptr));
    if constexpr (!std::is_void_v<T>) return std::move(*state->value);
  }

  // True once the promise is fulfilled (get() will not wait). Any thread.
  bool ready() const {
    if (!state_) return false;
    std::lock_guard<detail::CrossMutex> lock(state_->mutex);
    return state_->ready;
  }
  bool valid() const noexcept { return state_ != nullptr; }

 private:
  friend class Promise<T>;
  explicit Future(std::shared_ptr<detail::FutureState<T>> state) : state_(std::move(state)) {}

  std::shared_ptr<detail::FutureState<T>> state_;
};

// The setting side. Move-only; fulfilled once, from any thread or loop.
template <class T>
class Promise {
 public:
  Promise() : state_(std::make_shared<detail::FutureState<T>>()) {}
  Promise(Promise&&) noexcept = default;
  Promise& operator=(Promise&& other) noexcept {
    if (this != &other) {
      break_if_unfulfilled();
      state_ = std::move(other.state_);
      future_taken_ = other.future_taken_;
    }
    return *this;
  }
  ~Promise() { break_if_unfulfilled(); }

  // The future of this promise; once (std::future_error future_already_retrieved after).
  Future<T> get_future() {
    if (!state_) throw std::future_error(std::future_errc::no_state);
    if (future_taken_) throw std::future_error(std::future_errc::future_already_retrieved);
    future_taken_ = true;
    return Future<T>(state_);
  }

  // Fulfil: the waiting getter wakes. std::future_error (promise_already_satisfied) the second time.
  template <class U = T, class = std::enable_if_t<!std::is_void_v<U>>>
  void set_value(U value) {
    fulfil([&](detail::FutureState<T>& s) { s.value.emplace(std::move(value)); });
  }
  template <class U = T, class = std::enable_if_t<std::is_void_v<U>>>
  void set_value() {
    fulfil([](detail::FutureState<T>& s) { s.value = true; });
  }
  void set_exception(std::exception_ptr error) {
    fulfil([&](detail::FutureState<T>& s) { s.error = std::move(error); });
  }

 private:
  template <class Store>
  void fulfil(Store store) {
    if (!state_) throw std::future_error(std::future_errc::no_state);
    detail::WakeBatch wakes;  // fibers wake after the mutex is released
    std::lock_guard<detail::CrossMutex> lock(state_->mutex);
    if (state_->ready) throw std::future_error(std::future_errc::promise_already_satisfied);
    store(*state_);
    state_->ready = true;
    wakes.notify_all(state_->getters);
  }

  void break_if_unfulfilled() noexcept {
    if (!state_) return;
    detail::WakeBatch wakes;
    std::lock_guard<detail::CrossMutex> lock(state_->mutex);
    if (state_->ready) return;
    state_->error = std::make_exception_ptr(std::future_error(std::future_errc::broken_promise));
    state_->ready = true;
    wakes.notify_all(state_->getters);
  }

  std::shared_ptr<detail::FutureState<T>> state_;
  bool future_taken_ = false;
};

}  // namespace v1
}  // namespace stallwatch
