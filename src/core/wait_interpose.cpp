// Interposers for the waits a signal would end early, shipped inside
// libstallwatch itself: sleep, usleep, nanosleep, clock_nanosleep, poll,
// ppoll, select, pselect, epoll_wait and epoll_pwait (and the fortified
// __poll_chk, __ppoll_chk).
//
// A library linked into the program comes before libc in symbol lookup, so
// these replace libc's for every caller. Off a loop fiber each costs one
// thread-local check and an indirect call to the next definition (libc's,
// or a sanitizer's), found with dlsym(RTLD_NEXT) once. On a loop fiber the
// call publishes its context in the loop's WaitContext (core/wait_context.hpp):
// the registers at the call (a few stores; never unwound here) and the
// slice it is made in. A watchdog that finds the loop stalled
// in the wait then unwinds from that context on its own thread
// (watchdog/wait_capture.cpp) instead of signalling, so the wait runs its full
// length and returns what it would have returned unwatched.
//
// stallwatch's own waits (the reactor's epoll_wait, in an
// base::InternalBlockingScope on the scheduler) and every thread that runs no loop
// fall through at the first check. With libstallwatch-probes loaded first,
// the probes' interposers call these (probes → libstallwatch → libc).
//
// To cover another wait: add its symbol to STALLWATCH_WAIT_FUNCTIONS and an
// interposer below, and list it in docs/STACKS.md.

// The fortified inline wrappers must not replace the definitions below.
#undef _FORTIFY_SOURCE

#include <dlfcn.h>
#include <gnu/lib-names.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/loop_record.hpp"
#include "base/thread_state.hpp"
#include "core/wait_context.hpp"

// The fortified entry points (_FORTIFY_SOURCE builds call these instead).
extern "C" {
int __poll_chk(struct pollfd* fds, nfds_t nfds, int timeout, size_t fdslen);
int __ppoll_chk(struct pollfd* fds, nfds_t nfds, const struct timespec* timeout, const sigset_t* sigmask,
                size_t fdslen);
}

#define STALLWATCH_WAIT_FUNCTIONS(X)                                                       \
  X(sleep) X(usleep) X(nanosleep) X(clock_nanosleep) X(poll) X(__poll_chk) X(ppoll) X(__ppoll_chk) \
  X(select) X(pselect) X(epoll_wait) X(epoll_pwait)

namespace stallwatch::core {
namespace {

// The C library lacks a function defined here: there is nothing to forward
// to, so say which and stop. Uses only write(2) through syscall.
[[noreturn]] void missing_next_function(const char* name) {
  static const char prefix[] = "stallwatch: the C library has no ";
  syscall(SYS_write, 2, prefix, sizeof prefix - 1);
  syscall(SYS_write, 2, name, std::strlen(name));
  syscall(SYS_write, 2, "\n", 1);
  std::abort();
}

// The definition of `name` that this one stands in front of: the next one
// in the search order (a sanitizer's interceptor, libc's), or libc's when
// this library comes after libc (loaded by a preloaded libstallwatch-probes
// into a program that does not link stallwatch, such as a shell); these
// interposers are then never reached through the search order.
void* next_definition(const char* name) {
  if (void* fn = dlsym(RTLD_NEXT, name)) return fn;
  void* libc = dlopen(LIBC_SO, RTLD_LAZY | RTLD_NOLOAD);
  void* fn = libc != nullptr ? dlsym(libc, name) : nullptr;
  if (libc != nullptr) dlclose(libc);
  return fn;
}

// The next definition of `name`, cached in slot.
void* resolve(std::atomic<void*>& slot, const char* name) {
  void* fn = slot.load(std::memory_order_relaxed);
  if (fn == nullptr) [[unlikely]] {
    // Before the constructor below only when another library's constructor waits.
    fn = next_definition(name);
    if (fn == nullptr) missing_next_function(name);
    slot.store(fn, std::memory_order_relaxed);
  }
  return fn;
}

#define STALLWATCH_NEXT_SLOT(name) constinit std::atomic<void*> next_##name{nullptr};
STALLWATCH_WAIT_FUNCTIONS(STALLWATCH_NEXT_SLOT)
#undef STALLWATCH_NEXT_SLOT

// The next definition, with its own type.
#define NEXT(name) \
  (reinterpret_cast<decltype(&::name)>(stallwatch::core::resolve(stallwatch::core::next_##name, #name)))

__attribute__((constructor)) void resolve_next_functions() {
#define STALLWATCH_RESOLVE(name) resolve(next_##name, #name);
  STALLWATCH_WAIT_FUNCTIONS(STALLWATCH_RESOLVE)
#undef STALLWATCH_RESOLVE
}

// Calls next(args...) as a wait the watchdog can sample without a signal
// when a loop fiber makes it. Inlined into each interposer: the registers
// saved must be those of the interposer's own frame, which stays in place
// until the wait returns (a helper's frame would be gone).
template <class Next, class... Args>
inline __attribute__((always_inline)) auto published_wait(const void* caller_return, Next next, Args... args) {
  if (!base::on_loop_fiber()) [[likely]] return next(args...);
  LoopRecord* loop = current_loop_record();
  WaitContext& wait = loop->wait;
  const std::uint64_t slice = loop->slice.seq.load(std::memory_order_relaxed);
  if (!wait.claim(slice)) return next(args...);
  save_unwind_registers(wait.registers);
  wait.slice_seq = slice;
  wait.caller_return = caller_return;
  wait.fiber = base::current_fiber();
  wait.publish();
  const auto result = next(args...);
  wait.withdraw();  // keeps errno: no system call unless a read is in progress
  return result;
}

}  // namespace

void WaitContext::reset() noexcept { state_.store(idle, std::memory_order_relaxed); }

void WaitContext::pause_while_read() noexcept {
  // The watchdog holds the context for one unwind; let it run.
  const int saved_errno = errno;
  sched_yield();
  errno = saved_errno;
}

}  // namespace stallwatch::core

using stallwatch::core::published_wait;

// Each keeps the signature of libc's and returns what the next definition returns.
#define STALLWATCH_WAIT_INTERPOSER extern "C" __attribute__((visibility("default")))
#define STALLWATCH_CALLER __builtin_return_address(0)

STALLWATCH_WAIT_INTERPOSER unsigned int sleep(unsigned int seconds) {
  return published_wait(STALLWATCH_CALLER, NEXT(sleep), seconds);
}

STALLWATCH_WAIT_INTERPOSER int usleep(useconds_t usec) {
  return published_wait(STALLWATCH_CALLER, NEXT(usleep), usec);
}

STALLWATCH_WAIT_INTERPOSER int nanosleep(const struct timespec* req, struct timespec* rem) {
  return published_wait(STALLWATCH_CALLER, NEXT(nanosleep), req, rem);
}

STALLWATCH_WAIT_INTERPOSER int clock_nanosleep(clockid_t clock, int flags, const struct timespec* req,
                                               struct timespec* rem) {
  return published_wait(STALLWATCH_CALLER, NEXT(clock_nanosleep), clock, flags, req, rem);
}

STALLWATCH_WAIT_INTERPOSER int poll(struct pollfd* fds, nfds_t nfds, int timeout) {
  return published_wait(STALLWATCH_CALLER, NEXT(poll), fds, nfds, timeout);
}

STALLWATCH_WAIT_INTERPOSER int __poll_chk(struct pollfd* fds, nfds_t nfds, int timeout, size_t fdslen) {
  return published_wait(STALLWATCH_CALLER, NEXT(__poll_chk), fds, nfds, timeout, fdslen);
}

STALLWATCH_WAIT_INTERPOSER int ppoll(struct pollfd* fds, nfds_t nfds, const struct timespec* timeout,
                                     const sigset_t* sigmask) {
  return published_wait(STALLWATCH_CALLER, NEXT(ppoll), fds, nfds, timeout, sigmask);
}

STALLWATCH_WAIT_INTERPOSER int __ppoll_chk(struct pollfd* fds, nfds_t nfds, const struct timespec* timeout,
                                           const sigset_t* sigmask, size_t fdslen) {
  return published_wait(STALLWATCH_CALLER, NEXT(__ppoll_chk), fds, nfds, timeout, sigmask, fdslen);
}

STALLWATCH_WAIT_INTERPOSER int select(int nfds, fd_set* readfds, fd_set* writefds, fd_set* exceptfds,
                                      struct timeval* timeout) {
  return published_wait(STALLWATCH_CALLER, NEXT(select), nfds, readfds, writefds, exceptfds, timeout);
}

STALLWATCH_WAIT_INTERPOSER int pselect(int nfds, fd_set* readfds, fd_set* writefds, fd_set* exceptfds,
                                       const struct timespec* timeout, const sigset_t* sigmask) {
  return published_wait(STALLWATCH_CALLER, NEXT(pselect), nfds, readfds, writefds, exceptfds, timeout, sigmask);
}

STALLWATCH_WAIT_INTERPOSER int epoll_wait(int epfd, struct epoll_event* events, int maxevents, int timeout) {
  return published_wait(STALLWATCH_CALLER, NEXT(epoll_wait), epfd, events, maxevents, timeout);
}

STALLWATCH_WAIT_INTERPOSER int epoll_pwait(int epfd, struct epoll_event* events, int maxevents, int timeout,
                                           const sigset_t* sigmask) {
  return published_wait(STALLWATCH_CALLER, NEXT(epoll_pwait), epfd, events, maxevents, timeout, sigmask);
}
