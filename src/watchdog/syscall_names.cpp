#include "watchdog/syscall_names.hpp"

#include <sys/syscall.h>

#include <string_view>

namespace stallwatch::watchdog {
namespace {

struct Entry {
  long nr;
  std::string_view name;
};

#define STALLWATCH_SYSCALL(name) Entry{SYS_##name, #name}

// Numbers come from <sys/syscall.h>, so the table is right on any
// architecture for the calls it lists that exist there.
constexpr Entry table[] = {
#if defined(__x86_64__)
    STALLWATCH_SYSCALL(read), STALLWATCH_SYSCALL(write), STALLWATCH_SYSCALL(open),
    STALLWATCH_SYSCALL(close), STALLWATCH_SYSCALL(stat), STALLWATCH_SYSCALL(fstat),
    STALLWATCH_SYSCALL(lstat), STALLWATCH_SYSCALL(poll), STALLWATCH_SYSCALL(lseek),
    STALLWATCH_SYSCALL(mmap), STALLWATCH_SYSCALL(mprotect), STALLWATCH_SYSCALL(munmap),
    STALLWATCH_SYSCALL(brk), STALLWATCH_SYSCALL(ioctl), STALLWATCH_SYSCALL(pread64),
    STALLWATCH_SYSCALL(pwrite64), STALLWATCH_SYSCALL(readv), STALLWATCH_SYSCALL(writev),
    STALLWATCH_SYSCALL(access), STALLWATCH_SYSCALL(pipe), STALLWATCH_SYSCALL(select),
    STALLWATCH_SYSCALL(sched_yield), STALLWATCH_SYSCALL(msync), STALLWATCH_SYSCALL(madvise),
    STALLWATCH_SYSCALL(pause), STALLWATCH_SYSCALL(nanosleep), STALLWATCH_SYSCALL(alarm),
    STALLWATCH_SYSCALL(sendfile), STALLWATCH_SYSCALL(socket), STALLWATCH_SYSCALL(connect),
    STALLWATCH_SYSCALL(accept), STALLWATCH_SYSCALL(sendto), STALLWATCH_SYSCALL(recvfrom),
    STALLWATCH_SYSCALL(sendmsg), STALLWATCH_SYSCALL(recvmsg), STALLWATCH_SYSCALL(shutdown),
    STALLWATCH_SYSCALL(bind), STALLWATCH_SYSCALL(listen), STALLWATCH_SYSCALL(clone),
    STALLWATCH_SYSCALL(fork), STALLWATCH_SYSCALL(vfork), STALLWATCH_SYSCALL(execve),
    STALLWATCH_SYSCALL(exit), STALLWATCH_SYSCALL(wait4), STALLWATCH_SYSCALL(kill),
    STALLWATCH_SYSCALL(fcntl), STALLWATCH_SYSCALL(flock), STALLWATCH_SYSCALL(fsync),
    STALLWATCH_SYSCALL(fdatasync), STALLWATCH_SYSCALL(truncate), STALLWATCH_SYSCALL(ftruncate),
    STALLWATCH_SYSCALL(getdents), STALLWATCH_SYSCALL(rename), STALLWATCH_SYSCALL(mkdir),
    STALLWATCH_SYSCALL(rmdir), STALLWATCH_SYSCALL(creat), STALLWATCH_SYSCALL(link),
    STALLWATCH_SYSCALL(unlink), STALLWATCH_SYSCALL(readlink), STALLWATCH_SYSCALL(chmod),
    STALLWATCH_SYSCALL(rt_sigsuspend), STALLWATCH_SYSCALL(rt_sigtimedwait),
    STALLWATCH_SYSCALL(sigaltstack), STALLWATCH_SYSCALL(statfs), STALLWATCH_SYSCALL(fstatfs),
    STALLWATCH_SYSCALL(mlock), STALLWATCH_SYSCALL(sync), STALLWATCH_SYSCALL(mount),
    STALLWATCH_SYSCALL(gettid), STALLWATCH_SYSCALL(readahead), STALLWATCH_SYSCALL(futex),
    STALLWATCH_SYSCALL(io_getevents), STALLWATCH_SYSCALL(getdents64),
    STALLWATCH_SYSCALL(semtimedop), STALLWATCH_SYSCALL(fadvise64),
    STALLWATCH_SYSCALL(clock_gettime), STALLWATCH_SYSCALL(clock_nanosleep),
    STALLWATCH_SYSCALL(exit_group), STALLWATCH_SYSCALL(epoll_wait), STALLWATCH_SYSCALL(epoll_ctl),
    STALLWATCH_SYSCALL(tgkill), STALLWATCH_SYSCALL(waitid), STALLWATCH_SYSCALL(openat),
    STALLWATCH_SYSCALL(mkdirat), STALLWATCH_SYSCALL(newfstatat), STALLWATCH_SYSCALL(unlinkat),
    STALLWATCH_SYSCALL(renameat), STALLWATCH_SYSCALL(readlinkat), STALLWATCH_SYSCALL(faccessat),
    STALLWATCH_SYSCALL(pselect6), STALLWATCH_SYSCALL(ppoll), STALLWATCH_SYSCALL(splice),
    STALLWATCH_SYSCALL(tee), STALLWATCH_SYSCALL(sync_file_range), STALLWATCH_SYSCALL(vmsplice),
    STALLWATCH_SYSCALL(epoll_pwait), STALLWATCH_SYSCALL(fallocate), STALLWATCH_SYSCALL(accept4),
    STALLWATCH_SYSCALL(eventfd2), STALLWATCH_SYSCALL(epoll_create1), STALLWATCH_SYSCALL(dup3),
    STALLWATCH_SYSCALL(pipe2), STALLWATCH_SYSCALL(preadv), STALLWATCH_SYSCALL(pwritev),
    STALLWATCH_SYSCALL(recvmmsg), STALLWATCH_SYSCALL(sendmmsg), STALLWATCH_SYSCALL(syncfs),
    STALLWATCH_SYSCALL(getrandom), STALLWATCH_SYSCALL(copy_file_range),
    STALLWATCH_SYSCALL(preadv2), STALLWATCH_SYSCALL(pwritev2), STALLWATCH_SYSCALL(statx),
    STALLWATCH_SYSCALL(io_pgetevents), STALLWATCH_SYSCALL(io_uring_enter),
    STALLWATCH_SYSCALL(openat2), STALLWATCH_SYSCALL(epoll_pwait2), STALLWATCH_SYSCALL(futex_waitv),
#endif
};

#undef STALLWATCH_SYSCALL

}  // namespace

std::string syscall_name(long nr) {
  for (const Entry& e : table) {
    if (e.nr == nr) return std::string(e.name);
  }
  return "syscall " + std::to_string(nr);
}

}  // namespace stallwatch::watchdog
