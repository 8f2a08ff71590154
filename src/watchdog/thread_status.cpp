#include "watchdog/thread_status.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "watchdog/syscall_names.hpp"

namespace stallwatch::watchdog {
namespace {

int open_task_file(pid_t tid, const char* name) {
  const std::string path = "/proc/self/task/" + std::to_string(tid) + "/" + name;
  return ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
}

// Reads the whole (small) file at offset 0 into buf, NUL-terminated.
bool read_file(int fd, char* buf, std::size_t size) {
  if (fd < 0) return false;
  ssize_t n;
  do {
    n = ::pread(fd, buf, size - 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return false;
  buf[n] = '\0';
  return true;
}

}  // namespace

std::string Classification::describe() const {
  switch (kind) {
    case core::StallKind::cpu:
      return "on-cpu";
    case core::StallKind::blocked:
      return "blocked in " + syscall;
    case core::StallKind::preempted:
      return "preempted";
  }
  return "on-cpu";
}

Classification classify(const SyscallState& now, const ThreadTimes& start, const ThreadTimes& end,
                        std::uint64_t wall_ns) {
  const std::uint64_t cpu = end.cpu_ns > start.cpu_ns ? end.cpu_ns - start.cpu_ns : 0;
  const std::uint64_t delay = end.run_delay_ns > start.run_delay_ns ? end.run_delay_ns - start.run_delay_ns : 0;
  Classification c;
  if (now.where == SyscallState::Where::in_syscall && cpu < wall_ns / 2) {
    c.kind = core::StallKind::blocked;
    c.syscall = syscall_name(now.nr);
  } else if (delay > cpu) {
    c.kind = core::StallKind::preempted;
  } else if (cpu < wall_ns / 2 && now.where == SyscallState::Where::running) {
    // Runnable, and it ran for less than half the time: it waits for a CPU
    // (schedstat adds a wait to the run delay only once it ends). Never
    // "on-cpu" at 0 ms.
    c.kind = core::StallKind::preempted;
  } else if (cpu < wall_ns / 2) {
    // Neither running nor in a system call as /proc was read, and little
    // CPU: asleep in the kernel outside a system call (a page fault, a
    // stopped thread).
    c.kind = core::StallKind::blocked;
    c.syscall = unknown_wait;
  } else {
    c.kind = core::StallKind::cpu;
  }
  return c;
}

ThreadStatus::ThreadStatus(pid_t tid)
    : schedstat_fd_(open_task_file(tid, "schedstat")), syscall_fd_(open_task_file(tid, "syscall")) {}

ThreadStatus::~ThreadStatus() { close_all(); }

ThreadStatus::ThreadStatus(ThreadStatus&& other) noexcept
    : schedstat_fd_(std::exchange(other.schedstat_fd_, -1)), syscall_fd_(std::exchange(other.syscall_fd_, -1)) {}

ThreadStatus& ThreadStatus::operator=(ThreadStatus&& other) noexcept {
  if (this != &other) {
    close_all();
    schedstat_fd_ = std::exchange(other.schedstat_fd_, -1);
    syscall_fd_ = std::exchange(other.syscall_fd_, -1);
  }
  return *this;
}

void ThreadStatus::close_all() noexcept {
  if (schedstat_fd_ >= 0) ::close(schedstat_fd_);
  if (syscall_fd_ >= 0) ::close(syscall_fd_);
  schedstat_fd_ = syscall_fd_ = -1;
}

bool ThreadStatus::read_times(ThreadTimes& out) const {
  char buf[128];
  if (!read_file(schedstat_fd_, buf, sizeof buf)) return false;
  char* end = nullptr;
  out.cpu_ns = std::strtoull(buf, &end, 10);
  if (end == buf) return false;
  out.run_delay_ns = std::strtoull(end, nullptr, 10);
  return true;
}

bool ThreadStatus::read_syscall(SyscallState& out) const {
  char buf[256];
  if (!read_file(syscall_fd_, buf, sizeof buf)) return false;
  if (std::strncmp(buf, "running", 7) == 0) {
    out.where = SyscallState::Where::running;
    out.nr = -1;
    return true;
  }
  char* end = nullptr;
  const long nr = std::strtol(buf, &end, 10);
  if (end == buf) return false;
  out.nr = nr;
  out.where = nr < 0 ? SyscallState::Where::user : SyscallState::Where::in_syscall;
  return true;
}

}  // namespace stallwatch::watchdog
