// The in_process fork server and the parent's side of a call.
//
// Parent ──control socket (SOCK_SEQPACKET)──▶ server: {trampoline, fn} plus
// one end of a fresh socketpair (SCM_RIGHTS), the call's channel.
// Parent ──channel──▶ child: [u64 size][encoded arguments]
// child  ──channel──▶ parent: 'R' or 'E' frame: [tag][u64 size][bytes]
// server ──channel──▶ parent: after reaping the child, 'S' frame: [tag][i32 wait status]
// The parent reads the channel to its end, so it always learns how the child
// ended, even when the child died before writing anything.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>

#include "base/system_error.hpp"
#include "base/thread_state.hpp"
#include "core/loop.hpp"
#include "core/parking.hpp"
#include "emit/emitter.hpp"
#include "stallwatch/in_process.hpp"
#include "stallwatch/io.hpp"
#include "stallwatch/loop.hpp"
#include "watchdog/watchdog.hpp"

namespace stallwatch {
inline namespace v1 {

namespace {

struct CallRequest {
  std::uintptr_t trampoline;
  std::uintptr_t fn;
};

constexpr char frame_result = 'R';
constexpr char frame_error = 'E';
constexpr char frame_status = 'S';

// Children the server runs at once; further requests wait in the control
// socket's queue (and senders back off when it is full).
constexpr int max_children = 256;

std::mutex start_mutex;             // starting or replacing the server
std::atomic<int> control_fd{-1};
pid_t server_pid = -1;              // under start_mutex

// ---- server side: a single-threaded process; only system calls here ----

bool read_full(int fd, void* buffer, std::size_t size) {
  auto* p = static_cast<char*>(buffer);
  while (size > 0) {
    const ssize_t n = ::read(fd, p, size);
    if (n > 0) {
      p += n;
      size -= static_cast<std::size_t>(n);
    } else if (n == 0 || errno != EINTR) {
      return false;
    }
  }
  return true;
}

bool send_full(int fd, const void* data, std::size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL);
    if (n > 0) {
      p += n;
      size -= static_cast<std::size_t>(n);
    } else if (n < 0 && errno != EINTR) {
      return false;
    }
  }
  return true;
}

// In the forked child: read the arguments, run the call, exit.
[[noreturn]] void run_child(int channel, const CallRequest& request) {
  ::signal(SIGTERM, SIG_DFL);
  std::uint64_t size = 0;
  if (!read_full(channel, &size, sizeof size)) ::_exit(120);
  std::string args(size, '\0');
  if (!read_full(channel, args.data(), size)) ::_exit(121);
  auto trampoline = reinterpret_cast<detail::ProcessTrampoline>(request.trampoline);
  trampoline(request.fn, args.data(), args.size(), channel);
  ::_exit(0);
}

// A child whose caller went away (cancelled, or the parent ended) gets
// SIGTERM, and SIGKILL this long after if it is still there.
constexpr std::int64_t kill_grace_ms = 1000;

struct Child {
  pid_t pid;
  int pidfd;
  int channel;
  std::int64_t kill_at_ms;  // once sent SIGTERM: when SIGKILL follows; -1 before, 0 once sent
};

std::int64_t monotonic_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

// The caller's end of the channel closed before the child ended: nobody
// wants its result, and a function that never returns would otherwise run
// forever. SIGTERM now, SIGKILL after the grace period (end_abandoned).
void abandon_child(Child& child) {
  ::kill(child.pid, SIGTERM);
  child.kill_at_ms = monotonic_ms() + kill_grace_ms;
}

// SIGKILL for the abandoned children past their grace period; returns the
// poll timeout until the next one is due (-1: none).
int end_abandoned(Child* children, int count) {
  const std::int64_t now = monotonic_ms();
  std::int64_t next = -1;
  for (int i = 0; i < count; ++i) {
    Child& child = children[i];
    if (child.kill_at_ms <= 0) continue;
    if (child.kill_at_ms <= now) {
      ::kill(child.pid, SIGKILL);
      child.kill_at_ms = 0;
    } else if (next < 0 || child.kill_at_ms - now < next) {
      next = child.kill_at_ms - now;
    }
  }
  return static_cast<int>(next);
}

// Reaps a child and tells its caller how it ended.
void finish_child(Child& child) {
  int status = 0;
  while (::waitpid(child.pid, &status, 0) < 0 && errno == EINTR) {
  }
  const char frame = frame_status;
  send_full(child.channel, &frame, 1) && send_full(child.channel, &status, sizeof status);
  ::close(child.channel);
  if (child.pidfd >= 0) ::close(child.pidfd);
}

// Receives one request; returns false when the parent has gone.
bool accept_request(int control, Child* children, int& count) {
  CallRequest request{};
  iovec iov{&request, sizeof request};
  alignas(cmsghdr) char control_buf[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control_buf;
  msg.msg_controllen = sizeof control_buf;
  const ssize_t n = ::recvmsg(control, &msg, MSG_CMSG_CLOEXEC);
  if (n == 0) return false;
  if (n < 0) return errno == EINTR || errno == EAGAIN;
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  if (cmsg == nullptr || cmsg->cmsg_type != SCM_RIGHTS || n != sizeof request) return true;
  int channel = -1;
  std::memcpy(&channel, CMSG_DATA(cmsg), sizeof channel);

  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(control);
    for (int i = 0; i < count; ++i) {
      ::close(children[i].pidfd);
      ::close(children[i].channel);
    }
    run_child(channel, request);
  }
  if (pid < 0) {
    const int status = 127 << 8;  // reported as "exited with status 127"
    const char frame = frame_status;
    send_full(channel, &frame, 1) && send_full(channel, &status, sizeof status);
    ::close(channel);
    return true;
  }
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  Child child{pid, pidfd, channel, -1};
  if (pidfd < 0) {
    // No pidfd (Linux < 5.3): wait for this child now. Correct, but calls
    // then run one at a time.
    finish_child(child);
    return true;
  }
  children[count++] = child;
  return true;
}

[[noreturn]] void serve(int control) {
  // Ctrl-C reaches the whole process group: the parent drains, the server
  // stays until the parent has gone (its control socket then reads EOF).
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGTERM, SIG_IGN);
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);

  // Per child: its pidfd (it ended) and its channel (its caller went away).
  static Child children[max_children];
  static pollfd fds[1 + 2 * max_children];
  int count = 0;
  bool parent_gone = false;
  for (;;) {
    const int timeout_ms = end_abandoned(children, count);
    fds[0] = pollfd{parent_gone ? -1 : control, static_cast<short>(count < max_children ? POLLIN : 0), 0};
    for (int i = 0; i < count; ++i) {
      fds[1 + 2 * i] = pollfd{children[i].pidfd, POLLIN, 0};
      fds[2 + 2 * i] = pollfd{children[i].kill_at_ms < 0 ? children[i].channel : -1, POLLRDHUP, 0};
    }
    if (::poll(fds, static_cast<nfds_t>(1 + 2 * count), timeout_ms) < 0) {
      if (errno == EINTR) continue;
      ::_exit(1);
    }
    for (int i = count - 1; i >= 0; --i) {
      if (fds[1 + 2 * i].revents != 0) {
        finish_child(children[i]);
        children[i] = children[--count];
      } else if (fds[2 + 2 * i].revents != 0) {
        abandon_child(children[i]);
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      // The parent has gone: its channels closed with it, so its children
      // are being ended; the server leaves once they are reaped.
      if (!accept_request(control, children, count)) parent_gone = true;
    }
    if (parent_gone && count == 0) ::_exit(0);
  }
}

// ---- parent side ----

int ensure_server() {
  int fd = control_fd.load(std::memory_order_acquire);
  if (fd >= 0) return fd;
  start_process_server();
  return control_fd.load(std::memory_order_acquire);
}

// The control socket is shared by every loop thread, so a full queue is met
// with a short sleep rather than a reactor wait on a shared descriptor.
// Returns false when the server is gone (its end of the socket closed).
bool send_request(int control, const CallRequest& request, int channel) {
  iovec iov{const_cast<CallRequest*>(&request), sizeof request};
  alignas(cmsghdr) char control_buf[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control_buf;
  msg.msg_controllen = sizeof control_buf;
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cmsg), &channel, sizeof channel);
  auto delay = std::chrono::microseconds(200);
  for (;;) {
    if (::sendmsg(control, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0) return true;
    if (errno == EINTR) continue;
    if (errno == EPIPE || errno == ECONNRESET || errno == ECONNREFUSED || errno == ENOTCONN) return false;
    if (errno != EAGAIN) base::throw_errno(errno, std::string("in_process: ") + "send to the fork server");
    sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::microseconds(20'000));
  }
}

class Channel {
 public:
  explicit Channel(int fd) : fd_(fd) {}
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  ~Channel() {
    forget_fd(fd_);
    ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

void write_all(int fd, const char* p, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL);
    if (n >= 0) {
      p += n;
      size -= static_cast<std::size_t>(n);
    } else if (errno == EAGAIN) {
      wait_writable(fd);
    } else if (errno == EPIPE || errno == ECONNRESET) {
      return;  // the child is gone; its status frame says why
    } else if (errno != EINTR) {
      base::throw_errno(errno, std::string("in_process: ") + "send arguments");
    }
  }
}

std::string read_to_end(int fd) {
  std::string all;
  char chunk[16384];
  for (;;) {
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n > 0) {
      all.append(chunk, static_cast<std::size_t>(n));
    } else if (n == 0) {
      return all;
    } else if (errno == EAGAIN) {
      wait_readable(fd);
    } else if (errno == ECONNRESET) {
      return all;
    } else if (errno != EINTR) {
      base::throw_errno(errno, std::string("in_process: ") + "read result");
    }
  }
}

std::string describe_signal(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return "killed by signal " + std::to_string(sig) + (abbrev != nullptr ? " (SIG" + std::string(abbrev) + ")" : "");
}

// In the server: closes every descriptor but 0, 1, 2 and keep. A server
// forked from a running service would otherwise hold its connections and
// in_process channels open (a peer would never see them close).
void close_all_but_std_and(int keep) {
  const auto close_from_to = [](unsigned first, unsigned last) {
    if (first > last) return;
    if (::close_range(first, last, 0) == 0) return;
    rlimit limit{};
    const unsigned end = ::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < last ? limit.rlim_cur : 65536;
    for (unsigned fd = first; fd < end && fd <= last; ++fd) ::close(static_cast<int>(fd));
  };
  close_from_to(3, static_cast<unsigned>(keep) - 1);
  close_from_to(static_cast<unsigned>(keep) + 1, ~0u);
}

// Forks the server and publishes its control socket. Under start_mutex.
void fork_server_locked() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) < 0) base::throw_errno(errno, std::string("in_process: ") + "socketpair");
  pid_t pid;
  {
    watchdog::ForkWithoutLoops no_watchdog_in_server;
    pid = ::fork();
  }
  if (pid < 0) {
    const int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    base::throw_errno(err, std::string("in_process: ") + "fork the server");
  }
  if (pid == 0) {
    // Forked from a loop thread (a replacement): the server runs no fiber,
    // so the blocking-call probes must not flag its waits.
    base::tls_thread_state = base::ThreadState{};
    close_all_but_std_and(fds[1]);
    serve(fds[1]);
  }
  ::close(fds[1]);
  server_pid = pid;
  control_fd.store(fds[0], std::memory_order_release);
}

// The server behind dead_control is gone (killed, or crashed): reaps it, logs
// how it ended, and forks another, unless another caller already has. The new
// server is a fork of the running, multi-threaded process, so its children
// lose the start-up snapshot's guarantee (in_process.hpp); the log says so.
void replace_dead_server(int dead_control) {
  std::lock_guard lock(start_mutex);
  if (control_fd.load(std::memory_order_relaxed) != dead_control) return;
  control_fd.store(-1, std::memory_order_relaxed);
  ::close(dead_control);
  std::string how = "ended";
  int status = 0;
  // Its socket closed as it exited, so this wait is short.
  if (server_pid > 0 && ::waitpid(server_pid, &status, 0) == server_pid) {
    how = WIFSIGNALED(status) ? "was " + describe_signal(WTERMSIG(status))
                              : "exited with status " + std::to_string(WEXITSTATUS(status));
  }
  emit::message(emit::process_wide, "fork_server_replaced",
                "in_process: the fork server (pid " + std::to_string(server_pid) + ") " + how +
                    "; starting another from the running process (its children may inherit locks held by this "
                    "process's threads: see in_process.hpp)",
                {{"pid", std::int64_t{server_pid}}, {"end", how}});
  server_pid = -1;
  fork_server_locked();
}

// Turns the channel's frames into the result or a process_error.
std::string interpret(const std::string& frames) {
  bool have_result = false;
  bool have_status = false;
  char result_tag = 0;
  std::string payload;
  int status = 0;
  std::size_t pos = 0;
  while (pos < frames.size()) {
    const char tag = frames[pos++];
    if ((tag == frame_result || tag == frame_error) && frames.size() - pos >= sizeof(std::uint64_t)) {
      std::uint64_t size = 0;
      std::memcpy(&size, frames.data() + pos, sizeof size);
      pos += sizeof size;
      if (frames.size() - pos < size) break;
      payload.assign(frames, pos, size);
      pos += size;
      result_tag = tag;
      have_result = true;
    } else if (tag == frame_status && frames.size() - pos >= sizeof status) {
      std::memcpy(&status, frames.data() + pos, sizeof status);
      pos += sizeof status;
      have_status = true;
    } else {
      break;
    }
  }
  if (have_result && result_tag == frame_error) {
    throw process_error("stallwatch: in_process: the child threw: " + payload);
  }
  if (have_result) return payload;
  if (!have_status) throw process_error("stallwatch: in_process: the fork server went away during the call");
  if (WIFSIGNALED(status)) throw process_error("stallwatch: in_process: the child was " + describe_signal(WTERMSIG(status)));
  throw process_error("stallwatch: in_process: the child exited with status " + std::to_string(WEXITSTATUS(status)) +
                      " before returning a result");
}

// The work of call_in_process; the caller renames its waits' errors after it.
std::string send_call_and_wait(detail::ProcessTrampoline trampoline, std::uintptr_t fn, std::string args) {
  const int control = ensure_server();
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) base::throw_errno(errno, std::string("in_process: ") + "socketpair");
  Channel mine(pair[0]);
  // Only our end parks on the reactor; the child's end stays blocking.
  if (::fcntl(mine.get(), F_SETFL, ::fcntl(mine.get(), F_GETFL) | O_NONBLOCK) < 0) base::throw_errno(errno, std::string("in_process: ") + "fcntl");
  {
    Channel theirs(pair[1]);
    const CallRequest request{reinterpret_cast<std::uintptr_t>(trampoline), fn};
    if (!send_request(control, request, theirs.get())) {
      replace_dead_server(control);
      if (!send_request(ensure_server(), request, theirs.get())) {
        throw process_error("stallwatch: in_process: the fork server ended again as soon as it was replaced");
      }
    }
  }
  const std::uint64_t size = args.size();
  write_all(mine.get(), reinterpret_cast<const char*>(&size), sizeof size);
  write_all(mine.get(), args.data(), args.size());
  return interpret(read_to_end(mine.get()));
}

}  // namespace

void start_process_server() {
  std::lock_guard lock(start_mutex);
  if (control_fd.load(std::memory_order_relaxed) >= 0) return;
  fork_server_locked();
}

namespace detail {

std::string call_in_process(ProcessTrampoline trampoline, std::uintptr_t fn, std::string args) {
  core::Loop::require("in_process");
  // A cancel in any of its waits (a full server queue, the arguments, the
  // result) is reported as this call's: "in_process: cancelled".
  return core::as_operation([] { return std::string("in_process"); }, Deadline{},
                            [&] { return send_call_and_wait(trampoline, fn, std::move(args)); });
}

void write_child_frame(int fd, char tag, const char* data, std::size_t size) noexcept {
  const std::uint64_t length = size;
  send_full(fd, &tag, 1) && send_full(fd, &length, sizeof length) && send_full(fd, data, size);
}

}  // namespace detail

}  // namespace v1
}  // namespace stallwatch
