#include "watchdog/capture_signal.hpp"

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <ctime>
#include <mutex>
#include <system_error>

#include "core/coarse_clock.hpp"
#include "watchdog/backtrace.hpp"

namespace stallwatch::watchdog {

int default_capture_signal() { return SIGRTMIN + 4; }

void install_capture_handler(int signo) {
  static std::mutex mutex;
  static int installed = 0;
  std::lock_guard lock(mutex);
  if (installed == signo) return;
  struct sigaction action = {};
  action.sa_sigaction = &capture_signal_handler;
  // SA_RESTART: read/write/futex and friends resume after the capture.
  // (The kernel never restarts nanosleep, poll, select or epoll_wait: a loop
  // stalled in one is sampled without this signal, core/wait_interpose.cpp;
  // the waits outside that set return EINTR, see README "Signals".)
  // SA_ONSTACK: use the loop thread's alternate stack when it has one, so a
  // capture never overflows a small fiber stack.
  action.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  if (sigaction(signo, &action, nullptr) != 0) {
    throw std::system_error(errno, std::generic_category(), "stallwatch: sigaction for the capture signal");
  }
  installed = signo;
}

void prime_unwinder() {
  void* frames[8];
  backtrace_here(frames, 8);
}

std::uint64_t request_capture(CaptureSlot& slot, pid_t tid, int signo) {
  const std::uint64_t request = slot.requested.load(std::memory_order_relaxed) + 1;
  slot.request_sent_ns.store(core::monotonic_ns(), std::memory_order_relaxed);
  slot.requested.store(request, std::memory_order_release);
  if (syscall(SYS_tgkill, getpid(), tid, signo) != 0) {
    // Withdraw the request so a late handler never fills the slot.
    slot.requested.store(request - 1, std::memory_order_release);
    return 0;
  }
  return request;
}

bool wait_for_capture(const CaptureSlot& slot, std::uint64_t request, std::uint64_t timeout_ns) {
  const std::uint64_t start = core::monotonic_ns();
  for (int spins = 0;; ++spins) {
    if (slot.published.load(std::memory_order_acquire) == request) return true;
    if (core::monotonic_ns() - start >= timeout_ns) return false;
    if (spins < 64) {
      sched_yield();
    } else {
      const timespec pause{0, 20'000};
      nanosleep(&pause, nullptr);
    }
  }
}

}  // namespace stallwatch::watchdog
