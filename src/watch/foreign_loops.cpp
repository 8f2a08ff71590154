// The library side of the watch (foreign_loops.hpp): a thread of a program
// that does not use stallwatch's scheduler, wired as a loop to the emitter,
// the metrics endpoint and the watchdog, once, at its first wait.
#include "watch/foreign_loops.hpp"

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <string_view>

#include "base/coarse_clock.hpp"
#include "emit/emitter.hpp"
#include "metrics/endpoint.hpp"
#include "watchdog/watchdog.hpp"

namespace stallwatch::watch {
namespace {

// What the whole process is watched with, settled at the first thread's first wait.
struct ProcessWatch {
  std::once_flag settled;    // the configuration and the emitter
  std::once_flag announced;  // the line saying what is watched, the endpoint
  bool on = false;
  Config config;
};

ProcessWatch& process_watch() {
  static ProcessWatch* p = new ProcessWatch;  // never destroyed: threads end during exit
  return *p;
}

// The first real-time signal from SIGRTMIN+4 up that the program leaves at
// its default disposition, or 0. Chosen here rather than by the watchdog's
// `auto`, which says its choice in a line of its own: a guest says what it
// watches in one line.
int free_capture_signal() {
  for (int signo = SIGRTMIN + 4; signo <= SIGRTMAX; ++signo) {
    struct sigaction current {};
    if (sigaction(signo, nullptr, &current) != 0) continue;
    if ((current.sa_flags & SA_SIGINFO) == 0 && current.sa_handler == SIG_DFL) return signo;
  }
  return 0;
}

std::string signal_words(int signo) {
  return "SIGRTMIN+" + std::to_string(signo - SIGRTMIN) + " (signal " + std::to_string(signo) + ")";
}

// Reads the configuration and starts the emitter; says why nothing is
// watched when the configuration says so.
void settle_process_watch(ProcessWatch& p) {
  try {
    p.config = resolve_config(Options{});
  } catch (const std::exception& e) {
    emit::configure_process(Config{});
    emit::message(emit::process_wide, "watch_off",
                  std::string(e.what()) + "; stallwatch-watch watches nothing in this process");
    return;
  }
  emit::configure_process(p.config);
  if (!p.config.watchdog) return;  // STALLWATCH_WATCHDOG=off: watched by nobody, said by nobody
  if (p.config.capture_signal == 0) {
    p.config.capture_signal = free_capture_signal();
    p.config.capture_signal_setting = "stallwatch-watch";
    if (p.config.capture_signal == 0) {
      emit::message(emit::process_wide, "watch_off",
                    "every real-time signal from SIGRTMIN+4 up has a handler of the program's, "
                    "so none is left to capture stacks with; set STALLWATCH_SIGNAL to one it leaves alone. "
                    "Watching nothing in this process");
      return;
    }
  }
  p.on = true;
}

// Starts the endpoint, and says in one line what is watched and where its
// metrics are (a failed endpoint has said why in the line before). Once p.on.
void announce_process_watch(ProcessWatch& p) {
  std::string metrics = metrics::ensure_endpoint(p.config, metrics::SayStarted::by_caller);
  if (metrics.empty()) metrics = p.config.metrics_addr == "off" ? "off" : "not served";
  emit::message(emit::process_wide, "watch",
                "watching the epoll/poll/select loops of " +
                    std::string(program_invocation_short_name) + " (pid " + std::to_string(getpid()) +
                    "): threshold " + std::to_string(p.config.threshold.count()) + " ms, metrics " + metrics +
                    ", capture signal " + signal_words(p.config.capture_signal),
                {{"pid", static_cast<std::int64_t>(getpid())}, {"metrics", metrics}});
}

// The module holding `address` is stallwatch's own or one its metrics server
// is built from: its threads' waits are not the program's loops.
bool in_stallwatch_code(const void* address) {
  Dl_info info{};
  if (address == nullptr || dladdr(address, &info) == 0 || info.dli_fname == nullptr) return false;
  const char* slash = std::strrchr(info.dli_fname, '/');
  const std::string_view base = slash != nullptr ? slash + 1 : info.dli_fname;
  for (std::string_view own : {"libstallwatch", "libprometheus-cpp", "libcivetweb"}) {
    if (base.starts_with(own)) return true;
  }
  return false;
}

// A thread stallwatch started (the watchdog, the symbolizer's warm-up, the
// emitter's) or the metrics endpoint's civetweb started: by its name, for
// when its first wait reaches the interposers through another library's
// (a sanitizer's interceptors), which hides the caller's module.
bool own_thread_name(std::string_view name) {
  return name.starts_with("civetweb-") || name == "stallwatch-wd" || name == "stallwatch-sym" ||
         name == "stallwatch-log";
}

// The watched thread as reports name it.
struct ThreadIdentity {
  char name[16] = {};
  base::FiberIdentity identity;
};
thread_local ThreadIdentity this_thread;

}  // namespace
}  // namespace stallwatch::watch

using namespace stallwatch;

extern "C" bool stallwatch_watch_thread_begin(const void* wait_caller, watch::WatchedThread* out) noexcept {
  watch::ProcessWatch& p = watch::process_watch();
  try {
    std::call_once(p.settled, [&p] { watch::settle_process_watch(p); });
    if (!p.on || watch::in_stallwatch_code(wait_caller)) return false;
    watch::ThreadIdentity& me = watch::this_thread;
    if (pthread_getname_np(pthread_self(), me.name, sizeof me.name) != 0 || me.name[0] == '\0') {
      std::strncpy(me.name, program_invocation_short_name, sizeof me.name - 1);
    }
    if (watch::own_thread_name(me.name)) return false;
    std::call_once(p.announced, [&p] { watch::announce_process_watch(p); });

    me.identity.id = 0;
    me.identity.name = me.name;
    me.identity.name_len = std::strlen(me.name);

    core::LoopRecord& record = core::claim_loop_record();
    record.tid.store(static_cast<pid_t>(syscall(SYS_gettid)), std::memory_order_relaxed);
    record.thread = pthread_self();
    emit::attach_loop(record.index, p.config);
    try {
      watchdog::loop_started(record, p.config);
    } catch (const std::exception& e) {
      emit::detach_loop(record.index);
      core::release_loop_record(record);
      emit::message(emit::process_wide, "watch_thread_off",
                    std::string(e.what()) + "; stallwatch-watch does not watch thread " + me.name);
      return false;
    }
    // The capture handler names the thread from here (id 0: never a loop fiber
    // to the probes or libstallwatch's own wait interposers).
    base::tls_thread_state.fiber = &me.identity;
    out->record = &record;
    out->identity = &me.identity;
    out->coarse_clock = &base::coarse_now_ns_;
    return true;
  } catch (...) {
    return false;  // out of memory, or threads could not start: the program goes on unwatched
  }
}

extern "C" void stallwatch_watch_thread_end(core::LoopRecord* record) noexcept {
  if (record == nullptr) return;
  try {
    record->slice.idle.store(true, std::memory_order_release);
    watchdog::loop_stopped(*record);
    emit::detach_loop(record->index);
    core::release_loop_record(*record);
    base::tls_thread_state.fiber = nullptr;
  } catch (...) {
    // Exiting anyway: nothing of this thread's is left to write.
  }
}

extern "C" void stallwatch_watch_unwatchable(const char* how) noexcept {
  static std::atomic<bool> said{false};
  if (said.exchange(true)) return;
  try {
    watch::ProcessWatch& p = watch::process_watch();
    std::call_once(p.settled, [&p] { watch::settle_process_watch(p); });
    if (!p.on) return;
    emit::message(emit::process_wide, "watch_unwatchable",
                  std::string(program_invocation_short_name) + " waits through " + how +
                      ", which the watch cannot see: stalls of that loop are not reported");
  } catch (...) {
  }
}
