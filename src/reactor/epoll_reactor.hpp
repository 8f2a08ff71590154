// The loop's reactor: the one file pair that speaks epoll and eventfd.
//
// Descriptors are registered once, edge-triggered for both directions; each
// edge sets a readiness flag and wakes the fiber waiting for it. A wait first
// consumes a pending flag, so an edge that arrived early is never lost (at
// worst the caller sees one EAGAIN and waits again). Loop thread only, except
// the shared wake descriptor's calls. It knows nothing of fibers: a waiter is
// an IoWaiter that the scheduler embeds in each fiber, handed back when ready.
//
// A reader that saw the receive queue emptied (a short read or EAGAIN) says
// so with note_read_drained(): until the next readable edge, a read is sure
// to fail, so read_drained() lets it park without trying. Every byte that
// arrives after the queue was emptied raises an edge, so none is missed; a
// hang-up already reported turns the hint off for good (end of stream
// follows the last bytes without another edge).
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <vector>

#include "stallwatch/export.hpp"

namespace stallwatch::reactor {

// What the reactor keeps of a waiter: the descriptor and direction it waits
// on, and who it is (handed back by poll()).
struct IoWaiter {
  int fd = -1;  // -1: not waiting on a descriptor
  bool writable = false;
  void* owner = nullptr;
};

class Reactor {
 public:
  Reactor();
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // True (and the flag consumed) when fd already signalled readiness for the
  // direction since the last wait; otherwise registers waiter for it.
  // Throws std::system_error when fd cannot be watched. Exported for
  // libstallwatch-curl (its driver waits on its epoll set); internal.
  STALLWATCH_EXPORT bool consume_or_wait(int fd, bool writable, IoWaiter* waiter);
  // Removes waiter from its descriptor (timeout, cancellation).
  void drop_waiter(IoWaiter* waiter) noexcept;
  // Forgets fd before it is closed.
  void forget(int fd) noexcept;

  // fd's receive queue was seen empty: drops any readable edge that came
  // before (the read that emptied the queue took its bytes).
  void note_read_drained(int fd) noexcept;
  // True while no readable edge has come since note_read_drained(fd).
  bool read_drained(int fd) const noexcept {
    return fd >= 0 && static_cast<std::size_t>(fd) < fds_.size() && fds_[static_cast<std::size_t>(fd)].read_drained;
  }

  bool has_waiters() const noexcept { return waiters_ > 0; }

  // Called by poll() with the owner of each waiter whose descriptor is ready
  // (the waiter already dropped).
  using ReadyFn = void (*)(void* owner, void* context);

  // Waits up to timeout_ms (-1: until something happens) and hands each ready
  // waiter's owner to on_ready. Returns whether a remote notification arrived.
  bool poll(int timeout_ms, ReadyFn on_ready, void* context);

  // A descriptor of the eventfd that wakes poll(), owned by the caller (the
  // loop's inbox), so that it outlives the reactor. Throws std::system_error.
  int share_wake_fd() const;
  // Wakes a poll() in progress through a shared descriptor. Any thread.
  static void notify_shared_wake_fd(int fd) noexcept;
  static void close_shared_wake_fd(int fd) noexcept;

 private:
  struct FdState {
    IoWaiter* reader = nullptr;
    IoWaiter* writer = nullptr;
    bool registered = false;
    bool readable = false;
    bool writable = false;
    bool read_drained = false;
    bool read_closed = false;  // the peer hung up or the socket failed: sticky
  };

  FdState& state_for(int fd);

  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  int waiters_ = 0;
  std::vector<FdState> fds_;
  epoll_event events_[256];
};

}  // namespace stallwatch::reactor
