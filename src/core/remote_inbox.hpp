// A loop's inbox: what other threads (and other loops) hand it. Tasks posted
// through a LoopHandle, and fibers to wake (in_thread completions, Futures,
// SharedChannels). Multi-producer, single-consumer and lock-free.
//
// The whole state is one atomic word: the head of a stack of nodes (pushed
// with a CAS, taken whole by the loop with one exchange) and two flag bits.
// `closed`: the loop has stopped taking posts (wake-ups still come, for the
// fibers it is draining). `sleeping`: the loop is in, or about to enter,
// epoll_wait. A producer whose push clears `sleeping` is the one that writes
// the loop's eventfd, so a busy loop is reached without any system call, and
// a sleeping one with exactly one.
//
// The inbox is reference-counted: the loop holds one reference, every
// LoopHandle one, and a producer one for the length of a push. It keeps its
// own duplicate of the loop's eventfd, so a producer that wakes a loop that
// has just ended writes into a live, unread counter, never a closed or
// reused descriptor.
#pragma once

#include <atomic>
#include <cstdint>

#include "stallwatch/detail/remote.hpp"

namespace stallwatch {
inline namespace v1 {
namespace detail {

class RemoteInbox {
 public:
  // wake_fd: the inbox's own descriptor of the loop's eventfd (it closes it).
  RemoteInbox(int wake_fd, int loop_index) noexcept : wake_fd_(wake_fd), loop_index_(loop_index) {}
  RemoteInbox(const RemoteInbox&) = delete;
  RemoteInbox& operator=(const RemoteInbox&) = delete;

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept;

  int loop_index() const noexcept { return loop_index_; }
  bool closed() const noexcept { return (head_.load(std::memory_order_acquire) & closed_bit) != 0; }

  // Pushes a posted task; false (nothing queued) once the inbox is closed. Any thread.
  bool push_post(RemoteNode* node) noexcept { return push(node, true); }
  // Pushes a fiber wake-up, closed or not. Any thread; the caller holds a reference.
  void push_wake(RemoteNode* node) noexcept { push(node, false); }

  // The loop thread's side.
  // True when something waits to be taken: one load, for every scheduler pass.
  bool has_items() const noexcept { return (head_.load(std::memory_order_acquire) & pointer_mask) != 0; }
  // Takes every queued node, newest first (the caller reverses it as it
  // walks the list: one pass over nodes that are cold in this CPU's cache).
  RemoteNode* take_all() noexcept {
    return reinterpret_cast<RemoteNode*>(head_.fetch_and(closed_bit | sleeping_bit, std::memory_order_acq_rel) &
                                         pointer_mask);
  }
  // Announces that the loop is about to sleep. False when something already
  // waits (the loop must not sleep); otherwise the next push wakes it.
  bool prepare_to_sleep() noexcept;
  // The loop is awake again: pushes need no eventfd write.
  void woke() noexcept { head_.fetch_and(~sleeping_bit, std::memory_order_acq_rel); }
  // Refuses posts from now on; what was queued before stays to be taken.
  void close() noexcept { head_.fetch_or(closed_bit, std::memory_order_acq_rel); }

 private:
  static constexpr std::uintptr_t closed_bit = 1;
  static constexpr std::uintptr_t sleeping_bit = 2;
  static constexpr std::uintptr_t pointer_mask = ~(closed_bit | sleeping_bit);

  ~RemoteInbox();
  bool push(RemoteNode* node, bool refuse_when_closed) noexcept;

  std::atomic<std::uintptr_t> head_{0};
  std::atomic<int> refs_{1};
  const int wake_fd_;
  const int loop_index_;
};

// One owned reference to an inbox.
class InboxRef {
 public:
  explicit InboxRef(RemoteInbox* adopted) noexcept : inbox_(adopted) {}
  InboxRef(const InboxRef&) = delete;
  InboxRef& operator=(const InboxRef&) = delete;
  ~InboxRef() { inbox_->release(); }
  RemoteInbox* get() const noexcept { return inbox_; }
  RemoteInbox* operator->() const noexcept { return inbox_; }

 private:
  RemoteInbox* inbox_;
};

}  // namespace detail
}  // namespace v1

namespace core {
using detail::InboxRef;
using detail::RemoteInbox;
using detail::RemoteNode;
}  // namespace core

}  // namespace stallwatch
