// The Loop's side of its inbox (core/remote_inbox.hpp): wake-ups and posts
// from other threads, taken at each scheduler pass. Loop thread, except
// wake_through.
#include <algorithm>
#include <exception>
#include <string>
#include <utility>

#include "core/loop.hpp"
#include "stallwatch/errors.hpp"

namespace stallwatch::core {

namespace {

// A scheduler pass starts posted tasks as fibers up to this many ready
// fibers, and at least the second number (so posts never starve behind busy
// fibers): a burst of posts from other threads never takes a stack for each
// at once, and the ready queue stays short.
constexpr std::int64_t posts_ready_target = 128;
constexpr std::int64_t posts_started_at_least = 16;

}  // namespace

void Loop::wake_through(RemoteInbox* inbox, Fiber* fiber) noexcept {
  inbox->add_ref();
  fiber->remote_node.target = fiber;
  fiber->remote_node.is_task = false;
  inbox->push_wake(&fiber->remote_node);
  inbox->release();
}

void Loop::deliver_wake(Fiber* fiber) noexcept {
  if (fiber->parked) make_ready(fiber, WakeReason::notified, true);
  else fiber->remote_wake_arrived = true;
}

void Loop::await_remote_wake() {
  Fiber* self = running_;
  if (!self->remote_wake_arrived) park(0, false);
  self->remote_wake_arrived = false;
}

void Loop::drain_remote() {
  // The inbox hands the newest first: prepending each post to `oldest_first`
  // restores the order they were made in, in the same single pass.
  RemoteNode* oldest_first = nullptr;
  RemoteNode* newest = nullptr;
  for (RemoteNode* node = inbox_->take_all(); node != nullptr;) {
    RemoteNode* next = node->next;  // read first: a woken fiber reuses its node
    if (node->is_task) {
      if (newest == nullptr) newest = node;
      node->next = oldest_first;
      oldest_first = node;
    } else {
      deliver_wake(static_cast<Fiber*>(node->target));
    }
    node = next;
  }
  if (oldest_first == nullptr) return;
  if (posted_tail_ != nullptr) posted_tail_->next = oldest_first;
  else posted_head_ = oldest_first;
  posted_tail_ = newest;
}

void Loop::start_posted_batch() noexcept {
  const std::int64_t batch = std::max(posts_ready_target - ready_count_, posts_started_at_least);
  for (std::int64_t i = 0; i < batch && posted_head_ != nullptr; ++i) {
    RemoteNode* node = posted_head_;
    posted_head_ = node->next;
    if (posted_head_ == nullptr) posted_tail_ = nullptr;
    start_posted(static_cast<detail::PostedTask*>(node->target));
  }
}

void Loop::start_posted(detail::PostedTask* task) noexcept {
  try {
    start(task, task->fiber_name());
  } catch (...) {
    task->refuse(std::current_exception());  // no stack for it: the poster hears why
  }
  task->release();  // the poster's reference, passed with the node
}

// run_until_done ran every post queued before the inbox closed; only a loop
// ended by an error leaves some, and they hear so.
void Loop::refuse_queued_posts() noexcept {
  inbox_->close();
  drain_remote();  // moves every queued post behind those already taken
  posted_tail_ = nullptr;
  for (RemoteNode* node = std::exchange(posted_head_, nullptr); node != nullptr;) {
    RemoteNode* next = node->next;
    auto* task = static_cast<detail::PostedTask*>(node->target);
    task->refuse(std::make_exception_ptr(
        loop_stopped("stallwatch: loop " + std::to_string(record_.index) + " ended abnormally before a post could run")));
    task->release();
    node = next;
  }
}

}  // namespace stallwatch::core
