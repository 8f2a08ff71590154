// stallwatch/sync.hpp — fiber-aware Semaphore, Event, Mutex and Channel<T>.
//
// Waiting parks the fiber (the loop runs others), never the thread. These
// belong to one loop: use them from fibers of the loop that created them
// (cross-thread hand-off is in_thread's job). Every wait takes a Deadline and
// throws deadline_exceeded past it, or cancelled when the fiber is cancelled.
// Waiters are served first come, first served.
//
//   stallwatch::Channel<Job> jobs(64);
//   auto worker = stallwatch::spawn([&] {
//     while (auto job = jobs.receive()) handle(*job);   // nullopt once closed and drained
//   }, "worker");
//   jobs.send(Job{...});
//   jobs.close();
//   worker.join();
#pragma once

#include <cstddef>
#include <deque>
#include <optional>
#include <stdexcept>
#include <utility>

#include "stallwatch/deadline.hpp"
#include "stallwatch/detail/task_base.hpp"

namespace stallwatch {
inline namespace v1 {

// Counting semaphore.
class Semaphore {
 public:
  explicit Semaphore(std::size_t initial) : count_(initial) {}
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  void acquire(Deadline deadline = {}) {
    if (count_ > 0 && waiters_.empty()) {
      --count_;
      return;
    }
    // A release hands its unit straight to the first waiter.
    detail::park_on(waiters_, deadline, "Semaphore::acquire");
  }
  bool try_acquire() {
    if (count_ == 0 || !waiters_.empty()) return false;
    --count_;
    return true;
  }
  void release(std::size_t n = 1) {
    for (; n > 0; --n) {
      if (!detail::wake_one(waiters_)) ++count_;
    }
  }
  std::size_t available() const { return count_; }

 private:
  std::size_t count_;
  detail::WaitQueue waiters_;
};

// A flag fibers can wait for; set() wakes them all and stays set until clear().
class Event {
 public:
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  void set() {
    set_ = true;
    detail::wake_all(waiters_);
  }
  void clear() { set_ = false; }
  bool is_set() const { return set_; }
  void wait(Deadline deadline = {}) {
    if (!set_) detail::park_on(waiters_, deadline, "Event::wait");
  }

 private:
  bool set_ = false;
  detail::WaitQueue waiters_;
};

// Mutual exclusion between fibers, for critical sections that park (holding a
// std::mutex across a park would block the whole loop). Works with std::lock_guard.
class Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock(Deadline deadline = {}) {
    if (!locked_) {
      locked_ = true;
      return;
    }
    // unlock() hands the lock to the first waiter, which wakes holding it.
    detail::park_on(waiters_, deadline, "Mutex::lock");
  }
  bool try_lock() {
    if (locked_) return false;
    locked_ = true;
    return true;
  }
  void unlock() {
    if (!detail::wake_one(waiters_)) locked_ = false;
  }

 private:
  bool locked_ = false;
  detail::WaitQueue waiters_;
};

// send() on a closed channel.
class channel_closed : public std::runtime_error {
 public:
  channel_closed() : std::runtime_error("stallwatch: Channel::send on a closed channel") {}
};

// Bounded FIFO channel. send() parks while full, receive() while empty.
template <class T>
class Channel {
 public:
  explicit Channel(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Throws channel_closed if the channel is (or gets) closed.
  void send(T value, Deadline deadline = {}) {
    while (!closed_ && items_.size() >= capacity_) detail::park_on(senders_, deadline, "Channel::send");
    if (closed_) throw channel_closed();
    items_.push_back(std::move(value));
    detail::wake_one(receivers_);
  }

  bool try_send(T& value) {
    if (closed_ || items_.size() >= capacity_) return false;
    items_.push_back(std::move(value));
    detail::wake_one(receivers_);
    return true;
  }

  // The next value, or nullopt once the channel is closed and drained.
  std::optional<T> receive(Deadline deadline = {}) {
    while (items_.empty() && !closed_) detail::park_on(receivers_, deadline, "Channel::receive");
    if (items_.empty()) return std::nullopt;
    std::optional<T> value(std::move(items_.front()));
    items_.pop_front();
    detail::wake_one(senders_);
    return value;
  }

  // No more sends; receivers drain what is queued, then get nullopt.
  void close() {
    closed_ = true;
    detail::wake_all(receivers_);
    detail::wake_all(senders_);
  }

  bool closed() const { return closed_; }
  std::size_t size() const { return items_.size(); }
  std::size_t capacity() const { return capacity_; }

 private:
  std::size_t capacity_;
  bool closed_ = false;
  std::deque<T> items_;
  detail::WaitQueue senders_;
  detail::WaitQueue receivers_;
};

}  // namespace v1
}  // namespace stallwatch
