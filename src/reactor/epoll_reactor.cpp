#include "reactor/epoll_reactor.hpp"

#include <sys/epoll.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

#include "base/system_error.hpp"
#include "base/thread_state.hpp"

namespace stallwatch::reactor {

using base::InternalBlockingScope;

namespace {

constexpr std::uint64_t wake_token = ~std::uint64_t{0};

}  // namespace

Reactor::Reactor() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) base::throw_errno(errno, "epoll_create1");
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    close(epoll_fd_);
    base::throw_errno(errno, "eventfd");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = wake_token;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
    close(wake_fd_);
    close(epoll_fd_);
    base::throw_errno(errno, "epoll_ctl(eventfd)");
  }
}

Reactor::~Reactor() {
  close(wake_fd_);
  close(epoll_fd_);
}

Reactor::FdState& Reactor::state_for(int fd) {
  if (fd < 0) throw std::system_error(EBADF, std::generic_category(), "stallwatch: wait on a negative descriptor");
  if (static_cast<std::size_t>(fd) >= fds_.size()) fds_.resize(static_cast<std::size_t>(fd) + 64);
  return fds_[static_cast<std::size_t>(fd)];
}

bool Reactor::consume_or_wait(int fd, bool writable, IoWaiter* waiter) {
  FdState& st = state_for(fd);
  if (!st.registered) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = static_cast<std::uint64_t>(fd);
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) base::throw_errno(errno, "epoll_ctl(ADD)");
    st.registered = true;
  }
  bool& ready = writable ? st.writable : st.readable;
  if (ready) {
    ready = false;
    return true;
  }
  IoWaiter*& slot = writable ? st.writer : st.reader;
  if (slot != nullptr && slot != waiter) {
    throw std::system_error(EBUSY, std::generic_category(),
                            "stallwatch: another fiber already waits on this descriptor in this direction");
  }
  slot = waiter;
  ++waiters_;
  waiter->fd = fd;
  waiter->writable = writable;
  return false;
}

void Reactor::drop_waiter(IoWaiter* waiter) noexcept {
  const int fd = waiter->fd;
  if (fd < 0) return;
  waiter->fd = -1;
  if (static_cast<std::size_t>(fd) >= fds_.size()) return;
  FdState& st = fds_[static_cast<std::size_t>(fd)];
  IoWaiter*& slot = waiter->writable ? st.writer : st.reader;
  if (slot == waiter) {
    slot = nullptr;
    --waiters_;
  }
}

void Reactor::forget(int fd) noexcept {
  if (fd < 0 || static_cast<std::size_t>(fd) >= fds_.size()) return;
  FdState& st = fds_[static_cast<std::size_t>(fd)];
  if (st.registered) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  if (st.reader != nullptr) drop_waiter(st.reader);
  if (st.writer != nullptr) drop_waiter(st.writer);
  st = FdState{};
}

void Reactor::note_read_drained(int fd) noexcept {
  if (fd < 0 || static_cast<std::size_t>(fd) >= fds_.size()) return;
  FdState& st = fds_[static_cast<std::size_t>(fd)];
  // Unwatched, no edge would announce new bytes (the first wait registers the
  // descriptor and sees them). After a hang-up or error the next read returns
  // end of stream or the error at once, and no edge is coming for it.
  if (!st.registered || st.read_closed) return;
  st.read_drained = true;
  st.readable = false;
}

bool Reactor::poll(int timeout_ms, ReadyFn on_ready, void* context) {
  int n;
  {
    InternalBlockingScope internal;
    n = epoll_wait(epoll_fd_, events_, static_cast<int>(std::size(events_)), timeout_ms);
  }
  if (n < 0) {
    if (errno == EINTR) return false;
    base::throw_errno(errno, "epoll_wait");
  }
  bool remote = false;
  for (int i = 0; i < n; ++i) {
    const epoll_event& ev = events_[i];
    if (ev.data.u64 == wake_token) {
      // One read returns and resets the whole count.
      std::uint64_t count;
      InternalBlockingScope internal;
      [[maybe_unused]] const ssize_t drained = read(wake_fd_, &count, sizeof count);
      remote = true;
      continue;
    }
    const auto fd = static_cast<std::size_t>(ev.data.u64);
    if (fd >= fds_.size()) continue;
    FdState& st = fds_[fd];
    const bool failed = (ev.events & (EPOLLERR | EPOLLHUP)) != 0;
    if ((ev.events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) st.read_closed = true;
    if ((ev.events & (EPOLLIN | EPOLLRDHUP)) != 0 || failed) {
      st.read_drained = false;
      if (IoWaiter* reader = st.reader) {
        drop_waiter(reader);
        on_ready(reader->owner, context);
      } else {
        st.readable = true;
      }
    }
    if ((ev.events & EPOLLOUT) != 0 || failed) {
      if (IoWaiter* writer = st.writer) {
        drop_waiter(writer);
        on_ready(writer->owner, context);
      } else {
        st.writable = true;
      }
    }
  }
  return remote;
}

int Reactor::share_wake_fd() const {
  const int fd = fcntl(wake_fd_, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) base::throw_errno(errno, "dup(eventfd)");
  return fd;
}

void Reactor::notify_shared_wake_fd(int fd) noexcept {
  const std::uint64_t one = 1;
  InternalBlockingScope internal;
  [[maybe_unused]] ssize_t written = write(fd, &one, sizeof one);
}

void Reactor::close_shared_wake_fd(int fd) noexcept { close(fd); }

}  // namespace stallwatch::reactor
