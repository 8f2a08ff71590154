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
// an interposer below, and its counted name to probed_functions.hpp.

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
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/blocking_calls.hpp"

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
}

// Marks the probes as loaded; libstallwatch's strict-mode canary looks it up.
extern "C" const int stallwatch_probes_active = 1;

#define STALLWATCH_REAL_FUNCTIONS(X)                                                                         \
  X(sleep) X(usleep) X(nanosleep) X(clock_nanosleep)                                                       \
  X(read) X(write) X(recv) X(send) X(accept) X(connect) X(poll) X(select)                                  \
  X(__read_chk) X(__recv_chk) X(__poll_chk)                                                                \
  X(open) X(open64) X(openat) X(openat64) X(__open_2) X(__open64_2) X(__openat_2) X(__openat64_2)          \
  X(fopen) X(fopen64)                                                                                      \
  X(pread) X(pread64) X(pwrite) X(pwrite64) X(__pread_chk) X(__pread64_chk) X(fsync) X(fdatasync)          \
  X(getaddrinfo) X(gethostbyname)                                                                          \
  X(system) X(popen) X(waitpid) X(wait4)                                                                   \
  X(flock) X(fcntl) X(fcntl64)                                                                             \
  X(sem_wait) X(pthread_join) X(pthread_mutex_lock)

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
  if (fd >= 0) flag_if("open", [fd] { return disk_file(fd); });
  return fd;
}

FILE* opened(FILE* file) {
  if (file != nullptr) flag_if("fopen", [file] { return disk_file(fileno(file)); });
  return file;
}

bool nonzero(const struct timeval* tv) { return tv == nullptr || tv->tv_sec != 0 || tv->tv_usec != 0; }

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
