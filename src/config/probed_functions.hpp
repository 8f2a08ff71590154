// The blocking libc (and known library) functions the interposers of libstallwatch-probes
// (src/interpose/) replace, by the name they are counted and allowed under
// (open64, fopen64, __read_chk … count as open, fopen, read). One list for
// the interposers and for the STALLWATCH_ALLOW grammar (allow_list.hpp): to
// probe another function, add an interposer to src/interpose/interpose.cpp
// and its name here.
#pragma once

#include <string_view>

namespace stallwatch::config {

inline constexpr std::string_view probed_functions[] = {
    // sleeping
    "sleep", "usleep", "nanosleep", "clock_nanosleep",
    // descriptors in blocking mode (and regular files for read/write)
    "read", "write", "recv", "send", "accept", "connect", "poll", "select",
    "recvfrom", "recvmsg", "sendto", "sendmsg", "readv", "writev",
    // polling with signal masks, an event loop nested in a fiber
    "ppoll", "pselect", "epoll_wait", "epoll_pwait",
    // regular files
    "open", "fopen", "pread", "pwrite", "fsync", "fdatasync",
    // name resolution
    "getaddrinfo", "gethostbyname",
    // processes
    "system", "popen", "waitpid", "wait4",
    // file locks
    "flock", "fcntl",
    // waits on other threads (only a real wait counts)
    "sem_wait", "pthread_join", "pthread_mutex_lock",
    // the C++ standard library's waits: condition variables; futexes
    // (std::future, counting_semaphore, latch, barrier, atomic::wait, from
    // syscall(SYS_futex, …)); std::shared_mutex; timed mutexes; semaphores
    "pthread_cond_wait", "pthread_cond_timedwait", "pthread_cond_clockwait", "futex",
    "pthread_rwlock_rdlock", "pthread_rwlock_wrlock", "pthread_rwlock_timedrdlock", "pthread_rwlock_timedwrlock",
    "pthread_rwlock_clockrdlock", "pthread_rwlock_clockwrlock", "pthread_mutex_timedlock", "pthread_mutex_clocklock",
    "sem_timedwait", "sem_clockwait",
    // whole calls of known libraries (interposed only when the library is
    // loaded): the report names the call and its cooperative replacement
    "curl_easy_perform",
    // libpq, the PostgreSQL client library (stallwatch::pg is the cooperative
    // one): its synchronous calls; PQgetResult on a connection in blocking mode
    // whose result has not arrived; PQcancel, which waits for the server
    "PQexec", "PQexecParams", "PQprepare", "PQexecPrepared", "PQconnectdb", "PQconnectdbParams", "PQgetResult",
    "PQcancel",
};

}  // namespace stallwatch::config
