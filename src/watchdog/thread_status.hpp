// What the kernel says about a loop thread: its CPU time and run delay
// (/proc/self/task/TID/schedstat) and the system call it sits in
// (/proc/self/task/TID/syscall), read through descriptors opened once, and the
// classification of a stall from them. Watchdog thread (reads); NOT
// async-signal-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "core/loop_record.hpp"

namespace stallwatch::watchdog {

struct ThreadTimes {
  std::uint64_t cpu_ns = 0;        // time on a CPU
  std::uint64_t run_delay_ns = 0;  // time runnable but waiting for a CPU
};

struct SyscallState {
  enum class Where { unknown, running, user, in_syscall };
  Where where = Where::unknown;
  long nr = -1;  // when in_syscall
};

struct Classification {
  core::StallKind kind = core::StallKind::cpu;
  std::string syscall;  // for blocked: the call's name

  // "on-cpu", "blocked in <syscall>", "preempted".
  std::string describe() const;
};

// What a blocked stall says for its call when the thread was off the CPU but
// not in a system call as it was sampled.
inline constexpr const char* unknown_wait = "the kernel (no system call as sampled)";

// Classifies a stall from the thread's state now and its times at the
// slice's start and now (wall_ns apart):
// - blocked: it sits in a system call and used less than half the wall time on
//   a CPU;
// - preempted: it waited for a CPU longer than it ran;
// - preempted too: it is runnable now and ran for less than half the wall
//   time (a wait for a CPU still in progress is not in the run delay yet);
// - blocked (in unknown_wait): it is neither runnable nor in a system call
//   and ran for less than half the wall time (a page fault, stopped);
// - on-cpu: otherwise (it ran for at least half the wall time).
Classification classify(const SyscallState& now, const ThreadTimes& start, const ThreadTimes& end,
                        std::uint64_t wall_ns);

class ThreadStatus {
 public:
  ThreadStatus() = default;
  // Opens the thread's schedstat and syscall files (O_CLOEXEC). A file that
  // cannot be opened leaves its reads failing; never throws.
  explicit ThreadStatus(pid_t tid);
  ~ThreadStatus();
  ThreadStatus(ThreadStatus&& other) noexcept;
  ThreadStatus& operator=(ThreadStatus&& other) noexcept;
  ThreadStatus(const ThreadStatus&) = delete;
  ThreadStatus& operator=(const ThreadStatus&) = delete;

  // False when the file is missing or unreadable.
  bool read_times(ThreadTimes& out) const;
  bool read_syscall(SyscallState& out) const;

 private:
  void close_all() noexcept;
  int schedstat_fd_ = -1;
  int syscall_fd_ = -1;
};

}  // namespace stallwatch::watchdog
