#include "core/remote_inbox.hpp"

#include "reactor/epoll_reactor.hpp"

namespace stallwatch {
inline namespace v1 {
namespace detail {

RemoteInbox::~RemoteInbox() { reactor::Reactor::close_shared_wake_fd(wake_fd_); }

void RemoteInbox::release() noexcept {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

bool RemoteInbox::push(RemoteNode* node, bool refuse_when_closed) noexcept {
  std::uintptr_t old = head_.load(std::memory_order_relaxed);
  std::uintptr_t desired;
  do {
    if (refuse_when_closed && (old & closed_bit) != 0) return false;
    node->next = reinterpret_cast<RemoteNode*>(old & pointer_mask);
    // The push takes the sleeping flag with it: only this producer writes the eventfd.
    desired = reinterpret_cast<std::uintptr_t>(node) | (old & closed_bit);
  } while (!head_.compare_exchange_weak(old, desired, std::memory_order_acq_rel, std::memory_order_relaxed));
  if ((old & sleeping_bit) != 0) reactor::Reactor::notify_shared_wake_fd(wake_fd_);
  return true;
}

bool RemoteInbox::prepare_to_sleep() noexcept {
  std::uintptr_t old = head_.load(std::memory_order_relaxed);
  do {
    if ((old & pointer_mask) != 0) return false;
  } while (!head_.compare_exchange_weak(old, old | sleeping_bit, std::memory_order_acq_rel,
                                        std::memory_order_relaxed));
  return true;
}

}  // namespace detail
}  // namespace v1
}  // namespace stallwatch
