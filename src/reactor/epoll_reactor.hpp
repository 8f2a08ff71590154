// The loop's reactor: the one file pair that speaks epoll and eventfd.
//
// Descriptors are registered once, edge-triggered for both directions; each
// edge sets a readiness flag and wakes the fiber waiting for it. A wait first
// consumes a pending flag, so an edge that arrived early is never lost (at
// worst the caller sees one EAGAIN and waits again). Loop thread only, except
// notify_from_remote().
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <vector>

namespace stallwatch::core {

struct Fiber;
class Loop;

class Reactor {
 public:
  Reactor();
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // True (and the flag consumed) when fd already signalled readiness for the
  // direction since the last wait; otherwise registers fiber as its waiter.
  // Throws std::system_error when fd cannot be watched.
  bool consume_or_wait(int fd, bool writable, Fiber* fiber);
  // Removes fiber as the waiter of its descriptor (timeout, cancellation).
  void drop_waiter(Fiber* fiber) noexcept;
  // Forgets fd before it is closed.
  void forget(int fd) noexcept;

  bool has_waiters() const noexcept { return waiters_ > 0; }

  // Waits up to timeout_ms (-1: until something happens) and makes the
  // fibers whose descriptors are ready runnable on loop. Returns whether a
  // remote notification arrived.
  bool poll(int timeout_ms, Loop& loop);

  // Wakes a poll() in progress. Any thread.
  void notify_from_remote() noexcept;

 private:
  struct FdState {
    Fiber* reader = nullptr;
    Fiber* writer = nullptr;
    bool registered = false;
    bool readable = false;
    bool writable = false;
  };

  FdState& state_for(int fd);

  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  int waiters_ = 0;
  std::vector<FdState> fds_;
  epoll_event events_[256];
};

}  // namespace stallwatch::core
