// libstallwatch-watch.so: watches the event loops of a program that does not
// use stallwatch (asyncio, Boost.Asio, libevent, libuv, Redis), loaded with
// LD_PRELOAD (stallwatch-watch -- CMD does that).
//
// A thread is a loop while it waits in epoll_wait, epoll_pwait, epoll_pwait2,
// poll, ppoll, select or pselect; its first such wait wires it to the
// watchdog (foreign_loops.hpp). A slice runs from a return out of the
// thread's loop wait to its next entry into it: entering the wait ends the
// slice (the record goes idle), returning begins the next one. A thread that
// never waits is not watched; one that polls with a zero timeout has the gaps
// between its polls as slices.
//
// Which wait is the loop's: the thread's first epoll_wait/epoll_pwait/
// epoll_pwait2 names its loop's epoll descriptor; before any epoll wait, the
// call site (return address) of its first poll/ppoll/select/pselect is the
// loop's, until an epoll wait takes over (loops wait on epoll; the private
// waits of libraries — the resolver, libcurl's easy interface, libpq,
// Python's socket timeouts — use poll). When the thread closes the loop's
// epoll descriptor, the loop is over: the thread is idle until its next
// epoll wait, which names the new one (asyncio.run called twice); when
// another thread closes it, the thread's next epoll wait on another
// descriptor names it, unless the number was reused by then. Every other wait, and every sleep, is a blocking call inside
// the slice: it does not end it, and while the watchdog samples a stall in it
// the wait is unwound from the registers published at its call
// (core/wait_context.hpp), with no signal, so it returns no earlier than
// unwatched.
//
// The guest's rules (STYLE.md 20): on the interposed path no allocation, no
// lock and no system call beyond the wait itself: a thread-local check, two
// clock stamps and a few relaxed stores per loop wait. A thread's first wait
// does its wiring once (allocations, locks). io_uring (liburing's set-up
// calls) and waits made through syscall(2) are said to be unwatchable, once.
//
// Each interposer keeps the signature of libc's and returns what the next
// definition (libc's, found with dlsym(RTLD_NEXT)) returns, errno included.

// The fortified inline wrappers must not replace the definitions below.
#undef _FORTIFY_SOURCE

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdlib>
#include <cstring>

#include "base/coarse_clock.hpp"
#include "core/loop_record.hpp"
#include "core/wait_context.hpp"
#include "watch/foreign_loops.hpp"

// The fortified entry points (_FORTIFY_SOURCE builds call these instead), and
// liburing's set-up calls, declared here so no liburing header is needed.
extern "C" {
int __poll_chk(struct pollfd* fds, nfds_t nfds, int timeout, size_t fdslen);
int __ppoll_chk(struct pollfd* fds, nfds_t nfds, const struct timespec* timeout, const sigset_t* sigmask,
                size_t fdslen);
struct io_uring;
struct io_uring_params;
int io_uring_queue_init(unsigned entries, struct io_uring* ring, unsigned flags);
int io_uring_queue_init_params(unsigned entries, struct io_uring* ring, struct io_uring_params* params);
}

// Resolved as the library loads: libc's waits.
#define STALLWATCH_WATCH_FUNCTIONS(X)                                                                 \
  X(epoll_wait) X(epoll_pwait) X(epoll_pwait2) X(poll) X(__poll_chk) X(ppoll) X(__ppoll_chk) X(select) \
  X(pselect) X(sleep) X(usleep) X(nanosleep) X(clock_nanosleep) X(syscall) X(close)

namespace stallwatch::watch {
namespace {

// Nothing to forward to: say which and stop. Uses only write(2) through syscall.
[[noreturn]] void missing_next_function(const char* name) {
  static const char prefix[] = "stallwatch-watch: the C library has no ";
  ::syscall(SYS_write, 2, prefix, sizeof prefix - 1);
  ::syscall(SYS_write, 2, name, std::strlen(name));
  ::syscall(SYS_write, 2, "\n", 1);
  std::abort();
}

// The next definition of `name`, cached in slot. Null only for liburing's
// calls when no liburing is loaded (then nothing calls them).
void* resolve(std::atomic<void*>& slot, const char* name, bool required = true) {
  void* fn = slot.load(std::memory_order_relaxed);
  if (fn == nullptr) [[unlikely]] {
    fn = dlsym(RTLD_NEXT, name);
    if (fn == nullptr && required) missing_next_function(name);
    slot.store(fn, std::memory_order_relaxed);
  }
  return fn;
}

#define STALLWATCH_NEXT_SLOT(name) constinit std::atomic<void*> next_##name{nullptr};
STALLWATCH_WATCH_FUNCTIONS(STALLWATCH_NEXT_SLOT)
STALLWATCH_NEXT_SLOT(io_uring_queue_init)
STALLWATCH_NEXT_SLOT(io_uring_queue_init_params)
#undef STALLWATCH_NEXT_SLOT

#define NEXT(name) \
  (reinterpret_cast<decltype(&::name)>(stallwatch::watch::resolve(stallwatch::watch::next_##name, #name)))

// A thread's watch: whether it is a loop, which of its waits is the loop's,
// and the slice it is in.
struct ThreadWatch {
  enum class State : std::uint8_t { unknown, watched, passed_over, wiring };
  enum class LoopWait : std::uint8_t { none, poll_site, epoll_fd };
  State state;
  LoopWait loop_wait;
  int epoll_fd;
  const void* poll_site;
  core::LoopRecord* record;
  const base::FiberIdentity* identity;
  const std::atomic<std::uint64_t>* coarse_clock;
  std::uint64_t seq;             // slices begun on the record (its slice.seq)
  std::uint64_t slice_start_ns;  // of the running slice
};

// constinit and trivially destructible: no TLS wrapper, no allocation on first touch.
constinit thread_local ThreadWatch tls_watch __attribute__((tls_model("initial-exec"))) = {};

// Ends the watch of a thread as it exits (the key's value is its record).
pthread_key_t thread_end_key;

void end_thread_watch(void* record) {
  tls_watch.state = ThreadWatch::State::passed_over;  // waits made later in the exit are not a loop's
  stallwatch_watch_thread_end(static_cast<core::LoopRecord*>(record));
}

__attribute__((constructor)) void load_watch() {
#define STALLWATCH_RESOLVE(name) resolve(next_##name, #name);
  STALLWATCH_WATCH_FUNCTIONS(STALLWATCH_RESOLVE)
#undef STALLWATCH_RESOLVE
  pthread_key_create(&thread_end_key, end_thread_watch);
}

// exit(): the exiting thread's loop is ended as it would be at its thread's
// end, before the watchdog stops (registered after the watchdog's own exit
// handler, so it runs first): its stall in progress ends with its `stall
// ended` line, a capture in flight is finished, and exit goes on with the
// program's status.
void end_watch_at_exit() {
  ThreadWatch& t = tls_watch;
  if (t.state != ThreadWatch::State::watched) return;
  pthread_setspecific(thread_end_key, nullptr);
  end_thread_watch(t.record);
}

// A fork's child keeps the forking thread, and with it its watch (the
// watchdog keeps that thread's loop); nothing to do. An exec'd program loads
// this library afresh through the inherited LD_PRELOAD.

// Wires the calling thread as a loop at its first wait. False when it is not
// one (stallwatch's own thread, or the watch is off).
bool begin_watching(ThreadWatch& t, const void* caller) {
  t.state = ThreadWatch::State::wiring;  // the wiring's own waits pass through
  WatchedThread w;
  if (!stallwatch_watch_thread_begin(caller, &w)) {
    t.state = ThreadWatch::State::passed_over;
    return false;
  }
  t.record = w.record;
  t.identity = w.identity;
  t.coarse_clock = w.coarse_clock;
  t.seq = w.record->slice.seq.load(std::memory_order_relaxed);
  t.slice_start_ns = base::monotonic_ns();
  t.loop_wait = ThreadWatch::LoopWait::none;
  pthread_setspecific(thread_end_key, w.record);
  t.state = ThreadWatch::State::watched;
  static std::atomic<bool> exit_handler{false};
  if (!exit_handler.exchange(true)) std::atexit(end_watch_at_exit);
  return true;
}

enum class Family { epoll, poll };

// The loop's epoll descriptor is gone (closed): the next epoll wait names the
// loop's new one. A system call, made only for an epoll wait on another
// descriptor than the loop's.
bool closed(int fd) { return ::syscall(SYS_fcntl, fd, F_GETFD) < 0 && errno == EBADF; }

// Whether this wait is the thread's loop wait (the rule at the top of the file).
bool is_loop_wait(ThreadWatch& t, Family family, int epoll_fd, const void* caller) {
  switch (t.loop_wait) {
    case ThreadWatch::LoopWait::epoll_fd:
      if (family != Family::epoll) return false;
      if (epoll_fd == t.epoll_fd) return true;
      {
        const int saved_errno = errno;
        const bool gone = closed(t.epoll_fd);
        errno = saved_errno;
        if (!gone) return false;
      }
      break;
    case ThreadWatch::LoopWait::poll_site:
      if (family == Family::poll) return caller == t.poll_site;
      break;
    case ThreadWatch::LoopWait::none:
      break;
  }
  if (family == Family::epoll) {
    t.loop_wait = ThreadWatch::LoopWait::epoll_fd;
    t.epoll_fd = epoll_fd;
  } else {
    t.loop_wait = ThreadWatch::LoopWait::poll_site;
    t.poll_site = caller;
  }
  return true;
}

// Entering the loop wait ends the slice: its length recorded (from the
// coarse clock, as core::Loop does), the record idle.
inline __attribute__((always_inline)) void end_slice(ThreadWatch& t) {
  core::LoopRecord& record = *t.record;
  const std::uint64_t now = t.coarse_clock->load(std::memory_order_relaxed);
  // A scrape that sees this slice recorded also sees it counted (slice_duration_buckets).
  std::atomic_thread_fence(std::memory_order_release);
  if (now > t.slice_start_ns) record.stats.slice_duration.record(now - t.slice_start_ns);
  record.slice.idle.store(true, std::memory_order_release);
}

// The loop's epoll descriptor is closed: the slice ends, and the thread stays
// idle until its next loop wait returns (whose entry records no slice).
inline void end_loop(ThreadWatch& t) {
  end_slice(t);
  t.slice_start_ns = UINT64_MAX;
  t.loop_wait = ThreadWatch::LoopWait::none;
}

// Returning from the loop wait begins the next slice.
inline __attribute__((always_inline)) void begin_slice(ThreadWatch& t) {
  core::LoopRecord& record = *t.record;
  const std::uint64_t now = base::monotonic_ns();
  t.slice_start_ns = now;
  record.slice.start_ns.store(now, std::memory_order_relaxed);
  record.slice.seq.store(++t.seq, std::memory_order_release);
  record.slice.idle.store(false, std::memory_order_release);
}

// Calls next(args...) as a blocking call inside the slice, published for the
// watchdog (core/wait_context.hpp). Inlined into each interposer: the
// registers saved must be those of the interposer's own frame, which stays in
// place until the wait returns.
template <class Next, class... Args>
inline __attribute__((always_inline)) auto published_wait(ThreadWatch& t, const void* caller, Next next,
                                                          Args... args) {
  core::WaitContext& wait = t.record->wait;
  if (!wait.claim(t.seq)) return next(args...);
  core::save_unwind_registers(wait.registers);
  wait.slice_seq = t.seq;
  wait.caller_return = caller;
  wait.fiber = t.identity;
  wait.publish();
  const auto result = next(args...);
  wait.withdraw();  // keeps errno: no system call unless a read is in progress
  return result;
}

// A wait that may be the thread's loop wait. Inlined into each interposer (see above).
template <class Next, class... Args>
inline __attribute__((always_inline)) auto loop_wait(Family family, int epoll_fd, const void* caller, Next next,
                                                     Args... args) {
  ThreadWatch& t = tls_watch;
  if (t.state != ThreadWatch::State::watched) [[unlikely]] {
    if (t.state != ThreadWatch::State::unknown || !begin_watching(t, caller)) return next(args...);
  }
  if (!is_loop_wait(t, family, epoll_fd, caller)) return published_wait(t, caller, next, args...);
  end_slice(t);
  const auto result = next(args...);
  begin_slice(t);
  return result;
}

// A sleep: inside a watched thread's slice, a published blocking call.
template <class Next, class... Args>
inline __attribute__((always_inline)) auto sleep_wait(const void* caller, Next next, Args... args) {
  ThreadWatch& t = tls_watch;
  if (t.state != ThreadWatch::State::watched) [[likely]] return next(args...);
  return published_wait(t, caller, next, args...);
}

// Says once that the program waits where the watch cannot see.
void say_unwatchable(const char* how) {
  static std::atomic<bool> said{false};
  if (said.load(std::memory_order_relaxed) || said.exchange(true)) return;
  const int saved_errno = errno;
  stallwatch_watch_unwatchable(how);
  errno = saved_errno;
}

// The waits syscall(2) can make that the interposers below do not see.
const char* raw_wait_name(long number) {
  switch (number) {
    case SYS_epoll_wait:
      return "raw epoll_wait system calls";
    case SYS_epoll_pwait:
      return "raw epoll_pwait system calls";
    case SYS_poll:
      return "raw poll system calls";
    case SYS_ppoll:
      return "raw ppoll system calls";
    case SYS_select:
      return "raw select system calls";
    case SYS_pselect6:
      return "raw pselect6 system calls";
#ifdef SYS_epoll_pwait2
    case SYS_epoll_pwait2:
      return "raw epoll_pwait2 system calls";
#endif
#ifdef SYS_io_uring_setup
    case SYS_io_uring_setup:
      return "io_uring";
#endif
    default:
      return nullptr;
  }
}

}  // namespace
}  // namespace stallwatch::watch

// libstallwatch's definition is hidden inside it; the published waits of
// this library take their contexts back through this one (the same body).
void stallwatch::core::WaitContext::pause_while_read() noexcept {
  const int saved_errno = errno;
  sched_yield();
  errno = saved_errno;
}

using stallwatch::watch::Family;
using stallwatch::watch::loop_wait;
using stallwatch::watch::sleep_wait;

#define STALLWATCH_WATCH_INTERPOSER extern "C" __attribute__((visibility("default")))
#define STALLWATCH_CALLER __builtin_return_address(0)

STALLWATCH_WATCH_INTERPOSER int epoll_wait(int epfd, struct epoll_event* events, int maxevents, int timeout) {
  return loop_wait(Family::epoll, epfd, STALLWATCH_CALLER, NEXT(epoll_wait), epfd, events, maxevents, timeout);
}

STALLWATCH_WATCH_INTERPOSER int epoll_pwait(int epfd, struct epoll_event* events, int maxevents, int timeout,
                                            const sigset_t* sigmask) {
  return loop_wait(Family::epoll, epfd, STALLWATCH_CALLER, NEXT(epoll_pwait), epfd, events, maxevents, timeout,
                   sigmask);
}

STALLWATCH_WATCH_INTERPOSER int epoll_pwait2(int epfd, struct epoll_event* events, int maxevents,
                                             const struct timespec* timeout, const sigset_t* sigmask) {
  return loop_wait(Family::epoll, epfd, STALLWATCH_CALLER, NEXT(epoll_pwait2), epfd, events, maxevents, timeout,
                   sigmask);
}

STALLWATCH_WATCH_INTERPOSER int poll(struct pollfd* fds, nfds_t nfds, int timeout) {
  return loop_wait(Family::poll, -1, STALLWATCH_CALLER, NEXT(poll), fds, nfds, timeout);
}

STALLWATCH_WATCH_INTERPOSER int __poll_chk(struct pollfd* fds, nfds_t nfds, int timeout, size_t fdslen) {
  return loop_wait(Family::poll, -1, STALLWATCH_CALLER, NEXT(__poll_chk), fds, nfds, timeout, fdslen);
}

STALLWATCH_WATCH_INTERPOSER int ppoll(struct pollfd* fds, nfds_t nfds, const struct timespec* timeout,
                                      const sigset_t* sigmask) {
  return loop_wait(Family::poll, -1, STALLWATCH_CALLER, NEXT(ppoll), fds, nfds, timeout, sigmask);
}

STALLWATCH_WATCH_INTERPOSER int __ppoll_chk(struct pollfd* fds, nfds_t nfds, const struct timespec* timeout,
                                            const sigset_t* sigmask, size_t fdslen) {
  return loop_wait(Family::poll, -1, STALLWATCH_CALLER, NEXT(__ppoll_chk), fds, nfds, timeout, sigmask, fdslen);
}

STALLWATCH_WATCH_INTERPOSER int select(int nfds, fd_set* readfds, fd_set* writefds, fd_set* exceptfds,
                                       struct timeval* timeout) {
  return loop_wait(Family::poll, -1, STALLWATCH_CALLER, NEXT(select), nfds, readfds, writefds, exceptfds, timeout);
}

STALLWATCH_WATCH_INTERPOSER int pselect(int nfds, fd_set* readfds, fd_set* writefds, fd_set* exceptfds,
                                        const struct timespec* timeout, const sigset_t* sigmask) {
  return loop_wait(Family::poll, -1, STALLWATCH_CALLER, NEXT(pselect), nfds, readfds, writefds, exceptfds, timeout,
                   sigmask);
}

STALLWATCH_WATCH_INTERPOSER unsigned int sleep(unsigned int seconds) {
  return sleep_wait(STALLWATCH_CALLER, NEXT(sleep), seconds);
}

STALLWATCH_WATCH_INTERPOSER int usleep(useconds_t usec) { return sleep_wait(STALLWATCH_CALLER, NEXT(usleep), usec); }

STALLWATCH_WATCH_INTERPOSER int nanosleep(const struct timespec* req, struct timespec* rem) {
  return sleep_wait(STALLWATCH_CALLER, NEXT(nanosleep), req, rem);
}

STALLWATCH_WATCH_INTERPOSER int clock_nanosleep(clockid_t clock, int flags, const struct timespec* req,
                                                struct timespec* rem) {
  return sleep_wait(STALLWATCH_CALLER, NEXT(clock_nanosleep), clock, flags, req, rem);
}

// The thread closes its loop's epoll descriptor: the loop is over (asyncio's
// loop.close(), event_base_free), so the slice ends and the thread is idle
// until its next loop wait returns, and that wait's epoll is the loop's new
// one. Elsewhere one thread-local check.
STALLWATCH_WATCH_INTERPOSER int close(int fd) {
  stallwatch::watch::ThreadWatch& t = stallwatch::watch::tls_watch;
  if (t.loop_wait == stallwatch::watch::ThreadWatch::LoopWait::epoll_fd && fd == t.epoll_fd) [[unlikely]] {
    stallwatch::watch::end_loop(t);
  }
  return NEXT(close)(fd);
}

// syscall(2) with a wait's number: the watch cannot see that loop; said once.
// Six arguments are always passed on, whatever the call takes, as libc's own
// syscall does; the sixth comes from the caller's stack, past what a caller
// of fewer arguments wrote there, which AddressSanitizer would flag.
STALLWATCH_WATCH_INTERPOSER __attribute__((no_sanitize("address"))) long syscall(long number, ...) {
  va_list ap;
  va_start(ap, number);
  long a[6];
  for (long& arg : a) arg = va_arg(ap, long);
  va_end(ap);
  if (const char* how = stallwatch::watch::raw_wait_name(number)) [[unlikely]] {
    stallwatch::watch::say_unwatchable(how);
  }
  return NEXT(syscall)(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

// liburing's set-up: the ring's completions are waited for by io_uring_enter,
// which no interposer sees.
STALLWATCH_WATCH_INTERPOSER int io_uring_queue_init(unsigned entries, struct io_uring* ring, unsigned flags) {
  stallwatch::watch::say_unwatchable("io_uring");
  auto* next = reinterpret_cast<decltype(&::io_uring_queue_init)>(
      stallwatch::watch::resolve(stallwatch::watch::next_io_uring_queue_init, "io_uring_queue_init"));
  return next(entries, ring, flags);
}

STALLWATCH_WATCH_INTERPOSER int io_uring_queue_init_params(unsigned entries, struct io_uring* ring,
                                                           struct io_uring_params* params) {
  stallwatch::watch::say_unwatchable("io_uring");
  auto* next = reinterpret_cast<decltype(&::io_uring_queue_init_params)>(
      stallwatch::watch::resolve(stallwatch::watch::next_io_uring_queue_init_params, "io_uring_queue_init_params"));
  return next(entries, ring, params);
}
