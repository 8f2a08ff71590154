// stallwatch/sync.hpp — fiber-aware Semaphore, Event, Mutex and Channel<T>.
//
// Waiting parks the fiber (the loop runs others), never the thread. These
// belong to one loop: the loop that created them, or, made off any loop, the
// first loop that uses them. Any call from another loop or a plain thread
// throws wrong_loop naming the call and both sides; to cross loops use
// SharedChannel, Future or LoopHandle::post (loop_handle.hpp). Every wait
// takes a Deadline and throws deadline_exceeded past it, or cancelled when
// the fiber is cancelled. Waiters are served first come, first served.
// Destroying one while fibers wait on it wakes them with primitive_destroyed
// (on its own loop), or ends the process with a message (anywhere else).
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
#include <string>
#include <utility>

#include "stallwatch/deadline.hpp"
#include "stallwatch/detail/loop_owner.hpp"
#include "stallwatch/detail/task_base.hpp"

namespace stallwatch {
inline namespace v1 {

// Counting semaphore.
class Semaphore {
 public:
  explicit Semaphore(std::size_t initial) : count_(initial) {}
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;
  ~Semaphore() {
    if (!waiters_.empty()) detail::abandon_waiters(waiters_, owner_, "Semaphore");
  }

  void acquire(Deadline deadline = {}) {
    owner_.check("Semaphore::acquire");
    if (count_ > 0 && waiters_.empty()) {
      --count_;
      return;
    }
    // A release hands its unit straight to the first waiter.
    detail::park_on(waiters_, deadline, "Semaphore::acquire");
  }
  bool try_acquire() {
    owner_.check("Semaphore::try_acquire");
    if (count_ == 0 || !waiters_.empty()) return false;
    --count_;
    return true;
  }
  void release(std::size_t n = 1) {
    owner_.check("Semaphore::release");
    for (; n > 0; --n) {
      if (!detail::wake_one(waiters_)) ++count_;
    }
  }
  std::size_t available() const {
    owner_.check("Semaphore::available");
    return count_;
  }

 private:
  detail::LoopOwner owner_;
  std::size_t count_;
  detail::WaitQueue waiters_;
};

// A flag fibers can wait for; set() wakes them all and stays set until clear().
class Event {
 public:
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event() {
    if (!waiters_.empty()) detail::abandon_waiters(waiters_, owner_, "Event");
  }

  void set() {
    owner_.check("Event::set");
    set_ = true;
    detail::wake_all(waiters_);
  }
  void clear() {
    owner_.check("Event::clear");
    set_ = false;
  }
  bool is_set() const {
    owner_.check("Event::is_set");
    return set_;
  }
  void wait(Deadline deadline = {}) {
    owner_.check("Event::wait");
    if (!set_) detail::park_on(waiters_, deadline, "Event::wait");
  }

 private:
  detail::LoopOwner owner_;
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
  ~Mutex() {
    if (!waiters_.empty()) detail::abandon_waiters(waiters_, owner_, "Mutex");
  }

  void lock(Deadline deadline = {}) {
    owner_.check("Mutex::lock");
    if (!locked_) {
      locked_ = true;
      return;
    }
    // unlock() hands the lock to the first waiter, which wakes holding it.
    detail::park_on(waiters_, deadline, "Mutex::lock");
  }
  bool try_lock() {
    owner_.check("Mutex::try_lock");
    if (locked_) return false;
    locked_ = true;
    return true;
  }
  void unlock() {
    owner_.check("Mutex::unlock");
    if (!detail::wake_one(waiters_)) locked_ = false;
  }

 private:
  detail::LoopOwner owner_;
  bool locked_ = false;
  detail::WaitQueue waiters_;
};

// send() on a closed channel (Channel or SharedChannel).
class channel_closed : public std::runtime_error {
 public:
  channel_closed() : channel_closed("Channel::send") {}
  explicit channel_closed(const char* what)
      : std::runtime_error(std::string("stallwatch: ") + what + " on a closed channel") {}
};

// Bounded FIFO channel. send() parks while full, receive() while empty.
template <class T>
class Channel {
 public:
  explicit Channel(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  ~Channel() {
    if (!senders_.empty()) detail::abandon_waiters(senders_, owner_, "Channel");
    if (!receivers_.empty()) detail::abandon_waiters(receivers_, owner_, "Channel");
  }

  // Throws channel_closed if the channel is (or gets) closed.
  void send(T value, Deadline deadline = {}) {
    owner_.check("Channel::send");
    while (!closed_ && items_.size() >= capacity_) detail::park_on(senders_, deadline, "Channel::send");
    if (closed_) throw channel_closed();
    items_.push_back(std::move(value));
    detail::wake_one(receivers_);
  }

  bool try_send(T& value) {
    owner_.check("Channel::try_send");
    if (closed_ || items_.size() >= capacity_) return false;
    items_.push_back(std::move(value));
    detail::wake_one(receivers_);
    return true;
  }

  // The next value, or nullopt once the channel is closed and drained.
  std::optional<T> receive(Deadline deadline = {}) {
    owner_.check("Channel::receive");
    while (items_.empty() && !closed_) detail::park_on(receivers_, deadline, "Channel::receive");
    if (items_.empty()) return std::nullopt;
    std::optional<T> value(std::move(items_.front()));
    items_.pop_front();
    detail::wake_one(senders_);
    return value;
  }

  // No more sends; receivers drain what is queued, then get nullopt.
  void close() {
    owner_.check("Channel::close");
    closed_ = true;
    detail::wake_all(receivers_);
    detail::wake_all(senders_);
  }

  bool closed() const {
    owner_.check("Channel::closed");
    return closed_;
  }
  std::size_t size() const {
    owner_.check("Channel::size");
    return items_.size();
  }
  std::size_t capacity() const { return capacity_; }

 private:
  detail::LoopOwner owner_;
  std::size_t capacity_;
  bool closed_ = false;
  std::deque<T> items_;
  detail::WaitQueue senders_;
  detail::WaitQueue receivers_;
};

}  // namespace v1
}  // namespace stallwatch
