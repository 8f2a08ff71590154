#include "watchdog/capture_signal.hpp"

#include <dlfcn.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>
#include <system_error>

#include "stallwatch/errors.hpp"

#include "base/coarse_clock.hpp"
#include "base/system_error.hpp"
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
    base::throw_errno(errno, "sigaction for the capture signal");
  }
  installed = signo;
}

std::string describe_signal(int signo) {
  const int offset = signo - SIGRTMIN;
  const std::string number = "signal " + std::to_string(signo);
  if (offset >= 0 && signo <= SIGRTMAX) return "SIGRTMIN+" + std::to_string(offset) + " (" + number + ")";
  return number;
}

namespace {

// Which signals stallwatch claimed, for how many loops, and what it found on
// them. Guarded by claims_mutex; the watchdog's lifecycle lock serializes
// claims and releases with fork.
struct SignalClaim {
  int users = 0;
  bool have_previous = false;  // false: our handler was there already (install_capture_handler)
  struct sigaction previous {};
  bool chosen_line_logged = false;
};
std::mutex claims_mutex;
SignalClaim claims[_NSIG];

struct sigaction disposition_of(int signo) {
  struct sigaction current {};
  if (sigaction(signo, nullptr, &current) != 0) {
    throw std::system_error(errno, std::generic_category(), "stallwatch: sigaction reading " + describe_signal(signo));
  }
  return current;
}

bool is_ours(const struct sigaction& a) {
  return (a.sa_flags & SA_SIGINFO) != 0 && a.sa_sigaction == &capture_signal_handler;
}

bool is_default(const struct sigaction& a) { return (a.sa_flags & SA_SIGINFO) == 0 && a.sa_handler == SIG_DFL; }

// "SIG_IGN (it is ignored)", "the handler at 0x5581f0a1c2b0 (on_rt_signal in /usr/bin/app)".
std::string describe_disposition(const struct sigaction& a) {
  if ((a.sa_flags & SA_SIGINFO) == 0 && a.sa_handler == SIG_DFL) return "its default action (SIG_DFL)";
  if ((a.sa_flags & SA_SIGINFO) == 0 && a.sa_handler == SIG_IGN) return "SIG_IGN (it is ignored)";
  const void* address = (a.sa_flags & SA_SIGINFO) != 0 ? reinterpret_cast<const void*>(a.sa_sigaction)
                                                        : reinterpret_cast<const void*>(a.sa_handler);
  char hex[2 + 16 + 1];
  std::snprintf(hex, sizeof hex, "%p", address);
  std::string out = std::string("the handler at ") + hex;
  Dl_info info{};
  if (dladdr(address, &info) != 0) {
    out += " (";
    if (info.dli_sname != nullptr) out += std::string(info.dli_sname) + " in ";
    out += info.dli_fname != nullptr ? info.dli_fname : "?";
    out += ")";
  }
  return out;
}

void install_saving_previous(int signo, SignalClaim& claim) {
  struct sigaction action = {};
  action.sa_sigaction = &capture_signal_handler;
  action.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  struct sigaction previous {};
  if (sigaction(signo, &action, &previous) != 0) {
    throw std::system_error(errno, std::generic_category(), "stallwatch: sigaction for the capture signal");
  }
  if (!is_ours(previous)) {
    claim.previous = previous;
    claim.have_previous = true;
  }
}

// The signal `auto` settles on: the one our handler is on already, else the
// first from SIGRTMIN+4 up with the default disposition. `passed_over`
// names the ones before it that the application holds.
int choose_signal(std::string& passed_over) {
  for (int signo = default_capture_signal(); signo <= SIGRTMAX; ++signo) {
    if (claims[signo].users > 0) return signo;
  }
  for (int signo = default_capture_signal(); signo <= SIGRTMAX; ++signo) {
    const struct sigaction current = disposition_of(signo);
    if (is_ours(current) || is_default(current)) return signo;
    passed_over += (passed_over.empty() ? "" : ", ") + describe_signal(signo) + " has " + describe_disposition(current);
  }
  throw config_error("stallwatch: STALLWATCH_SIGNAL=auto found no free real-time signal from " +
                     describe_signal(default_capture_signal()) + " to " + describe_signal(SIGRTMAX) + ": " +
                     passed_over + ". Set STALLWATCH_SIGNAL to a real-time signal number the application leaves alone");
}

}  // namespace

ClaimedSignal claim_capture_signal(int configured, std::string_view setting) {
  std::lock_guard lock(claims_mutex);
  ClaimedSignal claimed;
  std::string passed_over;
  if (configured == 0) {
    claimed.signo = choose_signal(passed_over);
  } else {
    claimed.signo = configured;
    const struct sigaction current = disposition_of(configured);
    if (claims[configured].users == 0 && !is_ours(current) && !is_default(current)) {
      throw config_error("stallwatch: the capture signal " + describe_signal(configured) + ", set by " +
                         std::string(setting) + ", already has " + describe_disposition(current) +
                         ", which stallwatch did not install and will not take over. Pick another capture "
                         "signal: STALLWATCH_SIGNAL=auto (the first real-time signal from " +
                         describe_signal(default_capture_signal()) + " without a handler) or another real-time "
                         "signal number from " + std::to_string(SIGRTMIN) + " to " + std::to_string(SIGRTMAX));
    }
  }
  SignalClaim& claim = claims[claimed.signo];
  if (claim.users == 0) install_saving_previous(claimed.signo, claim);
  ++claim.users;
  if (configured == 0 && !claim.chosen_line_logged) {
    claim.chosen_line_logged = true;
    claimed.chosen_line = "capture signal " + describe_signal(claimed.signo) +
                          " (STALLWATCH_SIGNAL=auto: the first real-time signal from " +
                          describe_signal(default_capture_signal()) + " without a handler" +
                          (passed_over.empty() ? std::string() : "; " + passed_over) + ")";
  }
  return claimed;
}

void release_capture_signal(int signo) {
  std::lock_guard lock(claims_mutex);
  SignalClaim& claim = claims[signo];
  if (claim.users == 0 || --claim.users > 0) return;
  if (!claim.have_previous) return;
  claim.have_previous = false;
  struct sigaction current {};
  if (sigaction(signo, nullptr, &current) != 0 || !is_ours(current)) return;  // the application's now: keep it
  sigaction(signo, &claim.previous, nullptr);
}

void recount_capture_signal_users(const std::vector<int>& signals_of_remaining_loops) {
  // The child has one thread: no lock is held by another.
  for (SignalClaim& claim : claims) claim.users = 0;
  for (int signo : signals_of_remaining_loops) ++claims[signo].users;
}

std::string capture_handler_replacement(int signo) {
  struct sigaction current {};
  if (sigaction(signo, nullptr, &current) != 0 || is_ours(current)) return {};
  return "the capture signal's handler was replaced: " + describe_signal(signo) + " now has " +
         describe_disposition(current) + ", installed after stallwatch's";
}

void prime_unwinder() {
  void* frames[8];
  backtrace_here(frames, 8);
}

std::uint64_t request_capture(CaptureSlot& slot, pid_t tid, int signo) {
  const std::uint64_t request = slot.requested.load(std::memory_order_relaxed) + 1;
  slot.request_sent_ns.store(base::monotonic_ns(), std::memory_order_relaxed);
  slot.requested.store(request, std::memory_order_release);
  if (syscall(SYS_tgkill, getpid(), tid, signo) != 0) {
    // Withdraw the request so a late handler never fills the slot.
    slot.requested.store(request - 1, std::memory_order_release);
    return 0;
  }
  return request;
}

bool wait_for_capture(const CaptureSlot& slot, std::uint64_t request, std::uint64_t timeout_ns) {
  const std::uint64_t start = base::monotonic_ns();
  for (int spins = 0;; ++spins) {
    if (slot.published.load(std::memory_order_acquire) == request) return true;
    if (base::monotonic_ns() - start >= timeout_ns) return false;
    if (spins < 64) {
      sched_yield();
    } else {
      const timespec pause{0, 20'000};
      nanosleep(&pause, nullptr);
    }
  }
}

}  // namespace stallwatch::watchdog
