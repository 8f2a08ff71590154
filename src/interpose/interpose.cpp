// libstallwatch-probes: interposers for the known blocking libc functions.
//
// Loaded through LD_PRELOAD or linked before libc, each function here comes
// first in the global scope and so replaces libc's for every caller. It asks
// libstallwatch whether the calling thread runs a loop fiber (one call and a
// thread-local check: all the cost off a loop), then whether this call would
// really block (a descriptor in blocking mode, a regular file, a lock that
// try-locking could not take, a non-zero timeout), records it, and calls the
// real function, found with dlsym(RTLD_NEXT) at load time.
//
// The waits a signal would end early (sleep, poll, select …) are also
// interposed by libstallwatch itself, which publishes them for the watchdog
// (core/wait_interpose.cpp): the next definition these call is that one,
// which calls libc's.
//
// To probe another function: add its real symbol to STALLWATCH_REAL_FUNCTIONS,
// an interposer below, and its counted name to config/probed_functions.hpp.

// Defined before any header: `open` and `open64` (and the other *64 names)
// must stay distinct symbols here, not one redirected to the other, and the
// fortified inline wrappers must not replace the definitions below.
#undef _FILE_OFFSET_BITS
#undef _FORTIFY_SOURCE

#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <linux/futex.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "blocking/blocking_calls.hpp"
#include "stallwatch/allow_blocking.hpp"

// The fortified entry points (_FORTIFY_SOURCE builds call these instead).
extern "C" {
ssize_t __read_chk(int fd, void* buf, size_t nbytes, size_t buflen);
ssize_t __recv_chk(int fd, void* buf, size_t n, size_t buflen, int flags);
int __poll_chk(struct pollfd* fds, nfds_t nfds, int timeout, size_t fdslen);
ssize_t __pread_chk(int fd, void* buf, size_t nbytes, off_t offset, size_t buflen);
ssize_t __pread64_chk(int fd, void* buf, size_t nbytes, off64_t offset, size_t buflen);
int __open_2(const char* path, int flags);
int __open64_2(const char* path, int flags);
int __openat_2(int dirfd, const char* path, int flags);
int __openat64_2(int dirfd, const char* path, int flags);
int __ppoll_chk(struct pollfd* fds, nfds_t nfds, const struct timespec* timeout, const sigset_t* sigmask,
                size_t fdslen);
ssize_t __recvfrom_chk(int fd, void* buf, size_t n, size_t buflen, int flags, struct sockaddr* addr,
                       socklen_t* addrlen);
}

// Marks the probes as loaded; libstallwatch's strict-mode canary looks it up.
extern "C" const int stallwatch_probes_active = 1;

#define STALLWATCH_REAL_FUNCTIONS(X)                                                                         \
  X(sleep) X(usleep) X(nanosleep) X(clock_nanosleep)                                                       \
  X(read) X(write) X(recv) X(send) X(accept) X(connect) X(poll) X(select)                                  \
  X(recvfrom) X(recvmsg) X(sendto) X(sendmsg) X(readv) X(writev)                                           \
  X(ppoll) X(pselect) X(epoll_wait) X(epoll_pwait)                                                         \
  X(__read_chk) X(__recv_chk) X(__poll_chk) X(__ppoll_chk) X(__recvfrom_chk)                               \
  X(open) X(open64) X(openat) X(openat64) X(__open_2) X(__open64_2) X(__openat_2) X(__openat64_2)          \
  X(fopen) X(fopen64)                                                                                      \
  X(pread) X(pread64) X(pwrite) X(pwrite64) X(__pread_chk) X(__pread64_chk) X(fsync) X(fdatasync)          \
  X(getaddrinfo) X(gethostbyname)                                                                          \
  X(system) X(popen) X(waitpid) X(wait4)                                                                   \
  X(flock) X(fcntl) X(fcntl64)                                                                             \
  X(sem_wait) X(pthread_join) X(pthread_mutex_lock)                                                       \
  X(syscall)                                                                                               \
  X(pthread_cond_wait) X(pthread_cond_timedwait) X(pthread_cond_clockwait)                                 \
  X(pthread_rwlock_rdlock) X(pthread_rwlock_wrlock) X(pthread_rwlock_timedrdlock)                          \
  X(pthread_rwlock_timedwrlock) X(pthread_rwlock_clockrdlock) X(pthread_rwlock_clockwrlock)                \
  X(pthread_mutex_timedlock) X(pthread_mutex_clocklock) X(sem_timedwait) X(sem_clockwait)

namespace {

// libc lacks a function this library defines: there is nothing to forward
// to, so say which and stop. Uses only write(2) through syscall.
[[noreturn]] void missing_real_function(const char* name) {
  static const char prefix[] = "stallwatch-probes: the C library has no ";
  syscall(SYS_write, 2, prefix, sizeof prefix - 1);
  syscall(SYS_write, 2, name, std::strlen(name));
  syscall(SYS_write, 2, "\n", 1);
  std::abort();
}

// The address of the next definition of `name` after this library, cached in slot.
void* resolve(std::atomic<void*>& slot, const char* name) {
  void* fn = slot.load(std::memory_order_relaxed);
  if (fn == nullptr) [[unlikely]] {
    // Reached before the constructor below only when another library's
    // constructor calls a probed function first.
    fn = dlsym(RTLD_NEXT, name);
    if (fn == nullptr) missing_real_function(name);
    slot.store(fn, std::memory_order_relaxed);
  }
  return fn;
}

#define STALLWATCH_REAL_SLOT(name) constinit std::atomic<void*> real_##name{nullptr};
STALLWATCH_REAL_FUNCTIONS(STALLWATCH_REAL_SLOT)
#undef STALLWATCH_REAL_SLOT

// The real function, with its own type.
#define REAL(name) (reinterpret_cast<decltype(&::name)>(resolve(real_##name, #name)))

// Resolves every real function once, as the library loads.
__attribute__((constructor)) void resolve_real_functions() {
#define STALLWATCH_RESOLVE(name) resolve(real_##name, #name);
  STALLWATCH_REAL_FUNCTIONS(STALLWATCH_RESOLVE)
#undef STALLWATCH_RESOLVE
}

// The code of libstallwatch.so. Its own calls are internal (the recording
// drops them too); knowing them here spares its non-blocking I/O the checks
// below. Empty when stallwatch is linked into the program itself.
std::uintptr_t libstallwatch_lo = 0;
std::uintptr_t libstallwatch_hi = 0;

void find_libstallwatch_code() {
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void*) {
        const auto target = reinterpret_cast<std::uintptr_t>(&stallwatch_probe_should_flag);
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD || (ph.p_flags & PF_X) == 0) continue;
          const std::uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
          const std::uintptr_t hi = lo + ph.p_memsz;
          if (target < lo || target >= hi) continue;
          // The main program (empty name) holds it only when linked statically.
          if (info->dlpi_name != nullptr && info->dlpi_name[0] != '\0') {
            libstallwatch_lo = lo;
            libstallwatch_hi = hi;
          }
          return 1;
        }
        return 0;
      },
      nullptr);
}

__attribute__((constructor)) void find_libstallwatch_code_at_load() { find_libstallwatch_code(); }

// This call is one to check: a loop fiber makes it (one call and a
// thread-local check off a loop), and not libstallwatch's own code. Inlined
// into each interposer, so the return address is the interposer's caller.
inline __attribute__((always_inline)) bool to_check() {
  if (!stallwatch_probe_should_flag()) [[likely]] return false;
  const auto caller = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
  return caller < libstallwatch_lo || caller >= libstallwatch_hi;
}

// Records `name` when a loop fiber makes this call and `blocks()` says the
// call would really block. Off a loop, blocks() is never evaluated.
template <class Blocks>
inline __attribute__((always_inline)) void flag_if(const char* name, Blocks blocks) {
  if (to_check() && blocks()) [[unlikely]] stallwatch_probe_record(name);
}

inline __attribute__((always_inline)) void flag(const char* name) {
  flag_if(name, [] { return true; });
}

// The descriptor is in blocking mode (no O_NONBLOCK).
bool blocking_mode(int fd) {
  const int flags = REAL(fcntl)(fd, F_GETFL);
  return flags >= 0 && (flags & O_NONBLOCK) == 0;
}

// The descriptor is a regular file or a block device: O_NONBLOCK does not
// stop reads and writes from waiting for the disk.
bool disk_file(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode));
}

// An open that waited, or whose file waits at every read and write: a disk
// file, or a FIFO opened in blocking mode (its open waits for the other
// end, as std::ifstream on a named pipe does).
bool waits_at_open(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return false;
  if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) return true;
  return S_ISFIFO(st.st_mode) && blocking_mode(fd);
}

bool open_needs_mode(int flags) { return (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE; }

// open(2)'s mode argument is there only when flags create a file: declares
// `mode` and reads it then. A macro because va_start needs the caller's frame.
#define STALLWATCH_READ_OPEN_MODE(flags)             \
  mode_t mode = 0;                                   \
  if (open_needs_mode(flags)) {                      \
    va_list ap;                                      \
    va_start(ap, flags);                             \
    mode = static_cast<mode_t>(va_arg(ap, int));     \
    va_end(ap);                                      \
  }

int opened(int fd) {
  if (fd >= 0) flag_if("open", [fd] { return waits_at_open(fd); });
  return fd;
}

FILE* opened(FILE* file) {
  if (file != nullptr) flag_if("fopen", [file] { return waits_at_open(fileno(file)); });
  return file;
}

bool nonzero(const struct timeval* tv) { return tv == nullptr || tv->tv_sec != 0 || tv->tv_usec != 0; }

// A relative timeout that waits: none (forever), or not zero.
bool nonzero(const struct timespec* ts) { return ts == nullptr || ts->tv_sec != 0 || ts->tv_nsec != 0; }

// An absolute deadline on `clock` that is still ahead (none: forever). One
// already passed makes a timed wait return at once.
bool ahead(clockid_t clock, const struct timespec* deadline) {
  if (deadline == nullptr) return true;
  struct timespec now;
  if (clock_gettime(clock, &now) != 0) return true;
  return deadline->tv_sec > now.tv_sec || (deadline->tv_sec == now.tv_sec && deadline->tv_nsec > now.tv_nsec);
}

// The clock of a condition variable's timed waits: glibc keeps it in bit 1
// of __wrefs (pthread_condattr_setclock).
clockid_t condition_clock(const pthread_cond_t* cond) {
  return (cond->__data.__wrefs & 2) != 0 ? CLOCK_MONOTONIC : CLOCK_REALTIME;
}

// A futex operation that puts the caller to sleep (the wait operations and
// the PI locks), with a timeout that lets it: FUTEX_WAIT's is relative,
// FUTEX_WAIT_BITSET's and FUTEX_WAIT_REQUEUE_PI's absolute (on
// CLOCK_REALTIME with FUTEX_CLOCK_REALTIME, else CLOCK_MONOTONIC). The word
// itself is not read: a bad address must fail in the kernel with EFAULT, as
// it would without the probes, not fault here.
bool futex_waits(long op, long timeout_arg) {
  const auto* timeout = reinterpret_cast<const struct timespec*>(timeout_arg);
  const clockid_t clock = (op & FUTEX_CLOCK_REALTIME) != 0 ? CLOCK_REALTIME : CLOCK_MONOTONIC;
  switch (op & FUTEX_CMD_MASK) {
    case FUTEX_WAIT:
      return nonzero(timeout);
    case FUTEX_WAIT_BITSET:
    case FUTEX_WAIT_REQUEUE_PI:
      return ahead(clock, timeout);
    case FUTEX_LOCK_PI:
    case FUTEX_LOCK_PI2:
      return true;  // made only when the lock is taken: user space tried first
    default:
      return false;  // wake, requeue, unlock, trylock: never sleep
  }
}

}  // namespace

// Every interposer keeps the real function's signature and returns its result.
#define STALLWATCH_INTERPOSER extern "C" __attribute__((visibility("default")))

// ---- sleeping ----

STALLWATCH_INTERPOSER unsigned int sleep(unsigned int seconds) {
  flag("sleep");
  return REAL(sleep)(seconds);
}

STALLWATCH_INTERPOSER int usleep(useconds_t usec) {
  flag("usleep");
  return REAL(usleep)(usec);
}

STALLWATCH_INTERPOSER int nanosleep(const struct timespec* req, struct timespec* rem) {
  flag("nanosleep");
  return REAL(nanosleep)(req, rem);
}

STALLWATCH_INTERPOSER int clock_nanosleep(clockid_t clock, int flags, const struct timespec* req,
                                          struct timespec* rem) {
  flag("clock_nanosleep");
  return REAL(clock_nanosleep)(clock, flags, req, rem);
}

// ---- descriptors in blocking mode ----
// read/write count on a descriptor in blocking mode. A regular file opened
// with O_NONBLOCK still waits for the disk, but its open was flagged already;
// not checking for it keeps a non-blocking socket at one fcntl.

STALLWATCH_INTERPOSER ssize_t read(int fd, void* buf, size_t count) {
  flag_if("read", [fd] { return blocking_mode(fd); });
  return REAL(read)(fd, buf, count);
}

STALLWATCH_INTERPOSER ssize_t __read_chk(int fd, void* buf, size_t nbytes, size_t buflen) {
  flag_if("read", [fd] { return blocking_mode(fd); });
  return REAL(__read_chk)(fd, buf, nbytes, buflen);
}

STALLWATCH_INTERPOSER ssize_t write(int fd, const void* buf, size_t count) {
  flag_if("write", [fd] { return blocking_mode(fd); });
  return REAL(write)(fd, buf, count);
}

STALLWATCH_INTERPOSER ssize_t recv(int fd, void* buf, size_t len, int flags) {
  flag_if("recv", [fd, flags] { return (flags & MSG_DONTWAIT) == 0 && blocking_mode(fd); });
  return REAL(recv)(fd, buf, len, flags);
}

STALLWATCH_INTERPOSER ssize_t __recv_chk(int fd, void* buf, size_t len, size_t buflen, int flags) {
  flag_if("recv", [fd, flags] { return (flags & MSG_DONTWAIT) == 0 && blocking_mode(fd); });
  return REAL(__recv_chk)(fd, buf, len, buflen, flags);
}

STALLWATCH_INTERPOSER ssize_t send(int fd, const void* buf, size_t len, int flags) {
  flag_if("send", [fd, flags] { return (flags & MSG_DONTWAIT) == 0 && blocking_mode(fd); });
  return REAL(send)(fd, buf, len, flags);
}

STALLWATCH_INTERPOSER int accept(int fd, struct sockaddr* addr, socklen_t* addrlen) {
  flag_if("accept", [fd] { return blocking_mode(fd); });
  return REAL(accept)(fd, addr, addrlen);
}

STALLWATCH_INTERPOSER int connect(int fd, const struct sockaddr* addr, socklen_t addrlen) {
  flag_if("connect", [fd] { return blocking_mode(fd); });
  return REAL(connect)(fd, addr, addrlen);
}

STALLWATCH_INTERPOSER int poll(struct pollfd* fds, nfds_t nfds, int timeout) {
  flag_if("poll", [timeout] { return timeout != 0; });
  return REAL(poll)(fds, nfds, timeout);
}

STALLWATCH_INTERPOSER int __poll_chk(struct pollfd* fds, nfds_t nfds, int timeout, size_t fdslen) {
  flag_if("poll", [timeout] { return timeout != 0; });
  return REAL(__poll_chk)(fds, nfds, timeout, fdslen);
}

STALLWATCH_INTERPOSER int select(int nfds, fd_set* readfds, fd_set* writefds, fd_set* exceptfds,
                                 struct timeval* timeout) {
  flag_if("select", [timeout] { return nonzero(timeout); });
  return REAL(select)(nfds, readfds, writefds, exceptfds, timeout);
}

// ---- regular files ----

STALLWATCH_INTERPOSER int open(const char* path, int flags, ...) {
  STALLWATCH_READ_OPEN_MODE(flags);
  return opened(REAL(open)(path, flags, mode));
}

STALLWATCH_INTERPOSER int open64(const char* path, int flags, ...) {
  STALLWATCH_READ_OPEN_MODE(flags);
  return opened(REAL(open64)(path, flags, mode));
}

STALLWATCH_INTERPOSER int openat(int dirfd, const char* path, int flags, ...) {
  STALLWATCH_READ_OPEN_MODE(flags);
  return opened(REAL(openat)(dirfd, path, flags, mode));
}

STALLWATCH_INTERPOSER int openat64(int dirfd, const char* path, int flags, ...) {
  STALLWATCH_READ_OPEN_MODE(flags);
  return opened(REAL(openat64)(dirfd, path, flags, mode));
}

STALLWATCH_INTERPOSER int __open_2(const char* path, int flags) { return opened(REAL(__open_2)(path, flags)); }

STALLWATCH_INTERPOSER int __open64_2(const char* path, int flags) { return opened(REAL(__open64_2)(path, flags)); }

STALLWATCH_INTERPOSER int __openat_2(int dirfd, const char* path, int flags) {
  return opened(REAL(__openat_2)(dirfd, path, flags));
}

STALLWATCH_INTERPOSER int __openat64_2(int dirfd, const char* path, int flags) {
  return opened(REAL(__openat64_2)(dirfd, path, flags));
}

STALLWATCH_INTERPOSER FILE* fopen(const char* path, const char* mode) { return opened(REAL(fopen)(path, mode)); }

STALLWATCH_INTERPOSER FILE* fopen64(const char* path, const char* mode) { return opened(REAL(fopen64)(path, mode)); }

STALLWATCH_INTERPOSER ssize_t pread(int fd, void* buf, size_t count, off_t offset) {
  flag_if("pread", [fd] { return disk_file(fd); });
  return REAL(pread)(fd, buf, count, offset);
}

STALLWATCH_INTERPOSER ssize_t pread64(int fd, void* buf, size_t count, off64_t offset) {
  flag_if("pread", [fd] { return disk_file(fd); });
  return REAL(pread64)(fd, buf, count, offset);
}

STALLWATCH_INTERPOSER ssize_t __pread_chk(int fd, void* buf, size_t nbytes, off_t offset, size_t buflen) {
  flag_if("pread", [fd] { return disk_file(fd); });
  return REAL(__pread_chk)(fd, buf, nbytes, offset, buflen);
}

STALLWATCH_INTERPOSER ssize_t __pread64_chk(int fd, void* buf, size_t nbytes, off64_t offset, size_t buflen) {
  flag_if("pread", [fd] { return disk_file(fd); });
  return REAL(__pread64_chk)(fd, buf, nbytes, offset, buflen);
}

STALLWATCH_INTERPOSER ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
  flag_if("pwrite", [fd] { return disk_file(fd); });
  return REAL(pwrite)(fd, buf, count, offset);
}

STALLWATCH_INTERPOSER ssize_t pwrite64(int fd, const void* buf, size_t count, off64_t offset) {
  flag_if("pwrite", [fd] { return disk_file(fd); });
  return REAL(pwrite64)(fd, buf, count, offset);
}

STALLWATCH_INTERPOSER int fsync(int fd) {
  flag_if("fsync", [fd] { return disk_file(fd); });
  return REAL(fsync)(fd);
}

STALLWATCH_INTERPOSER int fdatasync(int fd) {
  flag_if("fdatasync", [fd] { return disk_file(fd); });
  return REAL(fdatasync)(fd);
}

// ---- name resolution ----

STALLWATCH_INTERPOSER int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints,
                                      struct addrinfo** res) {
  flag("getaddrinfo");
  return REAL(getaddrinfo)(node, service, hints, res);
}

STALLWATCH_INTERPOSER struct hostent* gethostbyname(const char* name) {
  flag("gethostbyname");
  return REAL(gethostbyname)(name);
}

// ---- whole calls of known libraries ----
//
// Resolved at the first call, not at load: the library may not be loaded
// (a program that calls curl_easy_perform has libcurl, so the next
// definition is there by then). The calls the library makes inside are the
// reported call's own: not reported again.

namespace {
constinit std::atomic<void*> real_curl_easy_perform{nullptr};
}  // namespace

// CURLcode curl_easy_perform(CURL*), without libcurl's headers: an enum is an int.
STALLWATCH_INTERPOSER int curl_easy_perform(void* easy) {
  using Perform = int (*)(void*);
  const auto real = reinterpret_cast<Perform>(resolve(real_curl_easy_perform, "curl_easy_perform"));
  if (!to_check()) [[likely]] return real(easy);
  stallwatch_probe_record("curl_easy_perform");
  stallwatch::allow_blocking inside;
  return real(easy);
}

// ---- processes ----

STALLWATCH_INTERPOSER int system(const char* command) {
  flag("system");
  return REAL(system)(command);
}

STALLWATCH_INTERPOSER FILE* popen(const char* command, const char* type) {
  flag("popen");
  return REAL(popen)(command, type);
}

STALLWATCH_INTERPOSER pid_t waitpid(pid_t pid, int* status, int options) {
  flag_if("waitpid", [options] { return (options & WNOHANG) == 0; });
  return REAL(waitpid)(pid, status, options);
}

STALLWATCH_INTERPOSER pid_t wait4(pid_t pid, int* status, int options, struct rusage* usage) {
  flag_if("wait4", [options] { return (options & WNOHANG) == 0; });
  return REAL(wait4)(pid, status, options, usage);
}

// ---- file locks ----

STALLWATCH_INTERPOSER int flock(int fd, int operation) {
  flag_if("flock", [operation] { return (operation & (LOCK_SH | LOCK_EX)) != 0 && (operation & LOCK_NB) == 0; });
  return REAL(flock)(fd, operation);
}

namespace {
bool waits_for_lock(int cmd) { return cmd == F_SETLKW || cmd == F_OFD_SETLKW; }
}  // namespace

// fcntl's third argument is an int or a pointer; like libc, pass it on as a pointer.
STALLWATCH_INTERPOSER int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  flag_if("fcntl", [cmd] { return waits_for_lock(cmd); });
  return REAL(fcntl)(fd, cmd, arg);
}

STALLWATCH_INTERPOSER int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  flag_if("fcntl", [cmd] { return waits_for_lock(cmd); });
  return REAL(fcntl64)(fd, cmd, arg);
}

// ---- waits on other threads: try first, only a real wait counts ----

STALLWATCH_INTERPOSER int sem_wait(sem_t* sem) {
  if (to_check()) [[unlikely]] {
    if (sem_trywait(sem) == 0) return 0;
    if (errno == EAGAIN) stallwatch_probe_record("sem_wait");
  }
  return REAL(sem_wait)(sem);
}

STALLWATCH_INTERPOSER int pthread_join(pthread_t thread, void** result) {
  if (to_check()) [[unlikely]] {
    const int r = pthread_tryjoin_np(thread, result);
    if (r != EBUSY) return r;
    stallwatch_probe_record("pthread_join");
  }
  return REAL(pthread_join)(thread, result);
}

STALLWATCH_INTERPOSER int pthread_mutex_lock(pthread_mutex_t* mutex) {
  if (to_check()) [[unlikely]] {
    // Taken (0), or an answer a real lock would give as well (EOWNERDEAD with
    // the lock held, EINVAL): only EBUSY means this call would wait.
    const int r = pthread_mutex_trylock(mutex);
    if (r != EBUSY) return r;
    stallwatch_probe_record("pthread_mutex_lock");
  }
  return REAL(pthread_mutex_lock)(mutex);
}

// ---- the waits of the C++ standard library (and of C code using the same calls) ----
// Flagged when they would wait. The lock-like ones try first, and only a
// call that could not take at once counts. (A stall in one is sampled with
// the capture signal, which SA_RESTART resumes them after; the waits a
// signal would end early are libstallwatch's own interposers' to spare.)

// std::condition_variable(_any): always a wait, until notified.
STALLWATCH_INTERPOSER int pthread_cond_wait(pthread_cond_t* cond, pthread_mutex_t* mutex) {
  flag("pthread_cond_wait");
  return REAL(pthread_cond_wait)(cond, mutex);
}

STALLWATCH_INTERPOSER int pthread_cond_timedwait(pthread_cond_t* cond, pthread_mutex_t* mutex,
                                                 const struct timespec* deadline) {
  flag_if("pthread_cond_timedwait", [cond, deadline] { return ahead(condition_clock(cond), deadline); });
  return REAL(pthread_cond_timedwait)(cond, mutex, deadline);
}

STALLWATCH_INTERPOSER int pthread_cond_clockwait(pthread_cond_t* cond, pthread_mutex_t* mutex, clockid_t clock,
                                                 const struct timespec* deadline) {
  flag_if("pthread_cond_clockwait", [clock, deadline] { return ahead(clock, deadline); });
  return REAL(pthread_cond_clockwait)(cond, mutex, clock, deadline);
}

// std::future, std::counting_semaphore, std::latch, std::barrier,
// std::atomic<T>::wait: libstdc++ waits with syscall(SYS_futex, …). syscall
// is variadic: all six argument registers are passed on, as glibc's own
// syscall() reads them.
STALLWATCH_INTERPOSER long syscall(long number, ...) {
  va_list ap;
  va_start(ap, number);
  const long a1 = va_arg(ap, long);
  const long a2 = va_arg(ap, long);
  const long a3 = va_arg(ap, long);
  const long a4 = va_arg(ap, long);
  const long a5 = va_arg(ap, long);
  const long a6 = va_arg(ap, long);
  va_end(ap);
  if (number != SYS_futex) [[likely]] return REAL(syscall)(number, a1, a2, a3, a4, a5, a6);
  flag_if("futex", [a2, a4] { return futex_waits(a2, a4); });
  return REAL(syscall)(number, a1, a2, a3, a4, a5, a6);
}

// std::shared_mutex, std::shared_timed_mutex. `taken` keeps the try's
// answer: anything but EBUSY is what the real call would have answered.
#define STALLWATCH_TRY_FIRST(name, try_call, blocks_too)                                           \
  int taken = EBUSY;                                                                               \
  flag_if(name, [&] {                                                                \
    taken = (try_call);                                                                            \
    return taken == EBUSY && (blocks_too);                                                         \
  });                                                                                              \
  if (taken != EBUSY) return taken

STALLWATCH_INTERPOSER int pthread_rwlock_rdlock(pthread_rwlock_t* lock) {
  STALLWATCH_TRY_FIRST("pthread_rwlock_rdlock", pthread_rwlock_tryrdlock(lock), true);
  return REAL(pthread_rwlock_rdlock)(lock);
}

STALLWATCH_INTERPOSER int pthread_rwlock_wrlock(pthread_rwlock_t* lock) {
  STALLWATCH_TRY_FIRST("pthread_rwlock_wrlock", pthread_rwlock_trywrlock(lock), true);
  return REAL(pthread_rwlock_wrlock)(lock);
}

STALLWATCH_INTERPOSER int pthread_rwlock_timedrdlock(pthread_rwlock_t* lock, const struct timespec* deadline) {
  STALLWATCH_TRY_FIRST("pthread_rwlock_timedrdlock", pthread_rwlock_tryrdlock(lock), ahead(CLOCK_REALTIME, deadline));
  return REAL(pthread_rwlock_timedrdlock)(lock, deadline);
}

STALLWATCH_INTERPOSER int pthread_rwlock_timedwrlock(pthread_rwlock_t* lock, const struct timespec* deadline) {
  STALLWATCH_TRY_FIRST("pthread_rwlock_timedwrlock", pthread_rwlock_trywrlock(lock), ahead(CLOCK_REALTIME, deadline));
  return REAL(pthread_rwlock_timedwrlock)(lock, deadline);
}

STALLWATCH_INTERPOSER int pthread_rwlock_clockrdlock(pthread_rwlock_t* lock, clockid_t clock,
                                                     const struct timespec* deadline) {
  STALLWATCH_TRY_FIRST("pthread_rwlock_clockrdlock", pthread_rwlock_tryrdlock(lock), ahead(clock, deadline));
  return REAL(pthread_rwlock_clockrdlock)(lock, clock, deadline);
}

STALLWATCH_INTERPOSER int pthread_rwlock_clockwrlock(pthread_rwlock_t* lock, clockid_t clock,
                                                     const struct timespec* deadline) {
  STALLWATCH_TRY_FIRST("pthread_rwlock_clockwrlock", pthread_rwlock_trywrlock(lock), ahead(clock, deadline));
  return REAL(pthread_rwlock_clockwrlock)(lock, clock, deadline);
}

// std::timed_mutex, std::recursive_timed_mutex.
STALLWATCH_INTERPOSER int pthread_mutex_timedlock(pthread_mutex_t* mutex, const struct timespec* deadline) {
  STALLWATCH_TRY_FIRST("pthread_mutex_timedlock", pthread_mutex_trylock(mutex), ahead(CLOCK_REALTIME, deadline));
  return REAL(pthread_mutex_timedlock)(mutex, deadline);
}

STALLWATCH_INTERPOSER int pthread_mutex_clocklock(pthread_mutex_t* mutex, clockid_t clock,
                                                  const struct timespec* deadline) {
  STALLWATCH_TRY_FIRST("pthread_mutex_clocklock", pthread_mutex_trylock(mutex), ahead(clock, deadline));
  return REAL(pthread_mutex_clocklock)(mutex, clock, deadline);
}

#undef STALLWATCH_TRY_FIRST

// sem_trywait answers -1 with errno EAGAIN where the wait would sleep.
STALLWATCH_INTERPOSER int sem_timedwait(sem_t* sem, const struct timespec* deadline) {
  bool taken = false;
  flag_if("sem_timedwait", [&] {
    taken = sem_trywait(sem) == 0;
    return !taken && errno == EAGAIN && ahead(CLOCK_REALTIME, deadline);
  });
  if (taken) return 0;
  return REAL(sem_timedwait)(sem, deadline);
}

STALLWATCH_INTERPOSER int sem_clockwait(sem_t* sem, clockid_t clock, const struct timespec* deadline) {
  bool taken = false;
  flag_if("sem_clockwait", [&] {
    taken = sem_trywait(sem) == 0;
    return !taken && errno == EAGAIN && ahead(clock, deadline);
  });
  if (taken) return 0;
  return REAL(sem_clockwait)(sem, clock, deadline);
}

// ---- polling with signal masks, and an event loop nested in a fiber ----

STALLWATCH_INTERPOSER int ppoll(struct pollfd* fds, nfds_t nfds, const struct timespec* timeout,
                                const sigset_t* sigmask) {
  flag_if("ppoll", [timeout] { return nonzero(timeout); });
  return REAL(ppoll)(fds, nfds, timeout, sigmask);
}

STALLWATCH_INTERPOSER int __ppoll_chk(struct pollfd* fds, nfds_t nfds, const struct timespec* timeout,
                                      const sigset_t* sigmask, size_t fdslen) {
  flag_if("ppoll", [timeout] { return nonzero(timeout); });
  return REAL(__ppoll_chk)(fds, nfds, timeout, sigmask, fdslen);
}

STALLWATCH_INTERPOSER int pselect(int nfds, fd_set* readfds, fd_set* writefds, fd_set* exceptfds,
                                  const struct timespec* timeout, const sigset_t* sigmask) {
  flag_if("pselect", [timeout] { return nonzero(timeout); });
  return REAL(pselect)(nfds, readfds, writefds, exceptfds, timeout, sigmask);
}

STALLWATCH_INTERPOSER int epoll_wait(int epfd, struct epoll_event* events, int maxevents, int timeout) {
  flag_if("epoll_wait", [timeout] { return timeout != 0; });
  return REAL(epoll_wait)(epfd, events, maxevents, timeout);
}

STALLWATCH_INTERPOSER int epoll_pwait(int epfd, struct epoll_event* events, int maxevents, int timeout,
                                      const sigset_t* sigmask) {
  flag_if("epoll_pwait", [timeout] { return timeout != 0; });
  return REAL(epoll_pwait)(epfd, events, maxevents, timeout, sigmask);
}

// ---- more socket and vector I/O on descriptors in blocking mode ----

namespace {
bool socket_call_waits(int fd, int flags) { return (flags & MSG_DONTWAIT) == 0 && blocking_mode(fd); }
}  // namespace

STALLWATCH_INTERPOSER ssize_t recvfrom(int fd, void* buf, size_t len, int flags, struct sockaddr* addr,
                                       socklen_t* addrlen) {
  flag_if("recvfrom", [fd, flags] { return socket_call_waits(fd, flags); });
  return REAL(recvfrom)(fd, buf, len, flags, addr, addrlen);
}

STALLWATCH_INTERPOSER ssize_t __recvfrom_chk(int fd, void* buf, size_t len, size_t buflen, int flags,
                                             struct sockaddr* addr, socklen_t* addrlen) {
  flag_if("recvfrom", [fd, flags] { return socket_call_waits(fd, flags); });
  return REAL(__recvfrom_chk)(fd, buf, len, buflen, flags, addr, addrlen);
}

STALLWATCH_INTERPOSER ssize_t recvmsg(int fd, struct msghdr* msg, int flags) {
  flag_if("recvmsg", [fd, flags] { return socket_call_waits(fd, flags); });
  return REAL(recvmsg)(fd, msg, flags);
}

STALLWATCH_INTERPOSER ssize_t sendto(int fd, const void* buf, size_t len, int flags, const struct sockaddr* addr,
                                     socklen_t addrlen) {
  flag_if("sendto", [fd, flags] { return socket_call_waits(fd, flags); });
  return REAL(sendto)(fd, buf, len, flags, addr, addrlen);
}

STALLWATCH_INTERPOSER ssize_t sendmsg(int fd, const struct msghdr* msg, int flags) {
  flag_if("sendmsg", [fd, flags] { return socket_call_waits(fd, flags); });
  return REAL(sendmsg)(fd, msg, flags);
}

STALLWATCH_INTERPOSER ssize_t readv(int fd, const struct iovec* iov, int count) {
  flag_if("readv", [fd] { return blocking_mode(fd); });
  return REAL(readv)(fd, iov, count);
}

STALLWATCH_INTERPOSER ssize_t writev(int fd, const struct iovec* iov, int count) {
  flag_if("writev", [fd] { return blocking_mode(fd); });
  return REAL(writev)(fd, iov, count);
}

// ---- libpq's blocking calls (the PostgreSQL client library) ----
// A program that links libpq and calls these on a loop waits for the server
// with the loop stopped; stallwatch::pg is the cooperative client. libpq is
// not a dependency of this library: its types are opaque here, and the real
// functions are looked up on first call (a program that calls them has
// libpq loaded), never at load time.

extern "C" {
struct pg_conn;
struct pg_result;
struct pg_cancel;
}

namespace {

constinit std::atomic<void*> real_PQexec{nullptr};
constinit std::atomic<void*> real_PQexecParams{nullptr};
constinit std::atomic<void*> real_PQprepare{nullptr};
constinit std::atomic<void*> real_PQexecPrepared{nullptr};
constinit std::atomic<void*> real_PQconnectdb{nullptr};
constinit std::atomic<void*> real_PQconnectdbParams{nullptr};
constinit std::atomic<void*> real_PQgetResult{nullptr};
constinit std::atomic<void*> real_PQcancel{nullptr};
constinit std::atomic<void*> real_PQisnonblocking{nullptr};
constinit std::atomic<void*> real_PQisBusy{nullptr};

template <class Fn>
Fn* real_pq(std::atomic<void*>& slot, const char* name) {
  return reinterpret_cast<Fn*>(resolve(slot, name));
}

// PQgetResult waits only on a connection in blocking mode whose result has
// not arrived yet.
bool pq_get_result_waits(pg_conn* conn) {
  return real_pq<int(const pg_conn*)>(real_PQisnonblocking, "PQisnonblocking")(conn) == 0 &&
         real_pq<int(pg_conn*)>(real_PQisBusy, "PQisBusy")(conn) == 1;
}

}  // namespace

STALLWATCH_INTERPOSER pg_result* PQexec(pg_conn* conn, const char* query) {
  flag("PQexec");
  return real_pq<pg_result*(pg_conn*, const char*)>(real_PQexec, "PQexec")(conn, query);
}

STALLWATCH_INTERPOSER pg_result* PQexecParams(pg_conn* conn, const char* command, int n, const unsigned* types,
                                              const char* const* values, const int* lengths, const int* formats,
                                              int result_format) {
  flag("PQexecParams");
  using Fn = pg_result*(pg_conn*, const char*, int, const unsigned*, const char* const*, const int*, const int*, int);
  return real_pq<Fn>(real_PQexecParams, "PQexecParams")(conn, command, n, types, values, lengths, formats,
                                                         result_format);
}

STALLWATCH_INTERPOSER pg_result* PQprepare(pg_conn* conn, const char* name, const char* query, int n,
                                           const unsigned* types) {
  flag("PQprepare");
  using Fn = pg_result*(pg_conn*, const char*, const char*, int, const unsigned*);
  return real_pq<Fn>(real_PQprepare, "PQprepare")(conn, name, query, n, types);
}

STALLWATCH_INTERPOSER pg_result* PQexecPrepared(pg_conn* conn, const char* name, int n, const char* const* values,
                                                const int* lengths, const int* formats, int result_format) {
  flag("PQexecPrepared");
  using Fn = pg_result*(pg_conn*, const char*, int, const char* const*, const int*, const int*, int);
  return real_pq<Fn>(real_PQexecPrepared, "PQexecPrepared")(conn, name, n, values, lengths, formats, result_format);
}

STALLWATCH_INTERPOSER pg_conn* PQconnectdb(const char* conninfo) {
  flag("PQconnectdb");
  return real_pq<pg_conn*(const char*)>(real_PQconnectdb, "PQconnectdb")(conninfo);
}

STALLWATCH_INTERPOSER pg_conn* PQconnectdbParams(const char* const* keywords, const char* const* values,
                                                 int expand_dbname) {
  flag("PQconnectdbParams");
  using Fn = pg_conn*(const char* const*, const char* const*, int);
  return real_pq<Fn>(real_PQconnectdbParams, "PQconnectdbParams")(keywords, values, expand_dbname);
}

STALLWATCH_INTERPOSER pg_result* PQgetResult(pg_conn* conn) {
  flag_if("PQgetResult", [conn] { return conn != nullptr && pq_get_result_waits(conn); });
  return real_pq<pg_result*(pg_conn*)>(real_PQgetResult, "PQgetResult")(conn);
}

STALLWATCH_INTERPOSER int PQcancel(pg_cancel* cancel, char* errbuf, int errbufsize) {
  flag("PQcancel");
  return real_pq<int(pg_cancel*, char*, int)>(real_PQcancel, "PQcancel")(cancel, errbuf, errbufsize);
}
