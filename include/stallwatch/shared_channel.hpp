// stallwatch/shared_channel.hpp — a bounded channel between loops and threads.
//
// SharedChannel<T> has Channel<T>'s calls, and any number of senders and
// receivers on any loops and plain threads: a fiber that waits parks (its
// loop runs other fibers), a plain thread that waits blocks. Waits take a
// Deadline and honour the fiber's cancellation, as Channel's do. Values come
// out in the order they went in; waiters are served first come, first served.
//
//   stallwatch::SharedChannel<Job> jobs(1024);
//   stallwatch::run_loops(2, [&](std::size_t i) {
//     if (i == 0) { for (auto& job : make_jobs()) jobs.send(std::move(job)); jobs.close(); }
//     else while (auto job = jobs.receive()) handle(*job);
//   });
//
// Its cost over Channel: a mutex per call, and a waiter on another loop
// is woken through that loop's inbox (an eventfd write only if it sleeps).
#pragma once

#include <cstddef>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "stallwatch/deadline.hpp"
#include "stallwatch/detail/remote.hpp"
#include "stallwatch/sync.hpp"

namespace stallwatch {
inline namespace v1 {

template <class T>
class SharedChannel {
 public:
  // capacity 0 is taken as 1.
  explicit SharedChannel(std::size_t capacity) : slots_(capacity == 0 ? 1 : capacity) {}
  SharedChannel(const SharedChannel&) = delete;
  SharedChannel& operator=(const SharedChannel&) = delete;
  // Destroying a channel that fibers or threads still wait on is a bug of the
  // caller (their stacks hold pointers into it): the process ends with a
  // message naming it, rather than let them touch freed memory.
  ~SharedChannel() {
    if (!senders_.empty() || !receivers_.empty()) detail::abandoned_cross_waiters("SharedChannel");
  }

  // Waits while the channel is full. Throws channel_closed if it is (or gets)
  // closed, deadline_exceeded past the deadline, cancelled for a cancelled fiber.
  void send(T value, Deadline deadline = {}) {
    detail::WakeBatch wakes;
    std::unique_lock<detail::CrossMutex> lock(mutex_);
    while (!closed_ && count_ == slots_.size()) detail::cross_wait(lock, senders_, deadline, "SharedChannel::send");
    if (closed_) throw channel_closed("SharedChannel::send");
    push(std::move(value));
    wakes.notify_one(receivers_);
  }

  // Sends without waiting; false (value untouched) when full or closed.
  bool try_send(T& value) {
    detail::WakeBatch wakes;
    std::lock_guard<detail::CrossMutex> lock(mutex_);
    if (closed_ || count_ == slots_.size()) return false;
    push(std::move(value));
    wakes.notify_one(receivers_);
    return true;
  }

  // The next value; waits while the channel is empty; nullopt once it is
  // closed and drained. Throws deadline_exceeded past the deadline, cancelled
  // for a cancelled fiber.
  std::optional<T> receive(Deadline deadline = {}) {
    detail::WakeBatch wakes;
    std::unique_lock<detail::CrossMutex> lock(mutex_);
    while (count_ == 0 && !closed_) detail::cross_wait(lock, receivers_, deadline, "SharedChannel::receive");
    if (count_ == 0) return std::nullopt;
    std::optional<T> value(std::move(*slots_[head_]));
    slots_[head_].reset();
    head_ = head_ + 1 == slots_.size() ? 0 : head_ + 1;
    --count_;
    wakes.notify_one(senders_);
    return value;
  }

  // No more sends; receivers drain what is queued, then get nullopt. Any thread.
  void close() {
    detail::WakeBatch wakes;
    std::lock_guard<detail::CrossMutex> lock(mutex_);
    closed_ = true;
    wakes.notify_all(receivers_);
    wakes.notify_all(senders_);
  }

  bool closed() const {
    std::lock_guard<detail::CrossMutex> lock(mutex_);
    return closed_;
  }
  std::size_t size() const {
    std::lock_guard<detail::CrossMutex> lock(mutex_);
    return count_;
  }
  std::size_t capacity() const { return slots_.size(); }

 private:
  void push(T&& value) {
    std::size_t tail = head_ + count_;
    if (tail >= slots_.size()) tail -= slots_.size();
    slots_[tail].emplace(std::move(value));
    ++count_;
  }

  mutable detail::CrossMutex mutex_;
  std::vector<std::optional<T>> slots_;  // a ring: count_ values from head_
  std::size_t head_ = 0;
  std::size_t count_ = 0;
  bool closed_ = false;
  detail::CrossWaitList senders_;
  detail::CrossWaitList receivers_;
};

}  // namespace v1
}  // namespace stallwatch
