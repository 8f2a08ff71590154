// The blocking libc (and known library) functions the interposers of libstallwatch-probes
// (src/interpose/) replace, by the name they are counted and allowed under
// (open64, fopen64, __read_chk … count as open, fopen, read). One list for
// the interposers, the STALLWATCH_ALLOW grammar (allow_list.hpp) and the
// advice a report gives (emit/advice.cpp words each Instead): to probe
// another function, add an interposer to src/interpose/interpose.cpp and its
// name here, with what to call instead.
#pragma once

#include <algorithm>
#include <iterator>
#include <string_view>

namespace stallwatch::config {

// The cooperative call a report advises in place of a blocking one.
enum class Instead { in_thread, curl_or_http, resolve, sleep_for, run_process, future, pg };

struct ProbedFunction {
  std::string_view name;
  Instead instead = Instead::in_thread;
};

inline constexpr ProbedFunction probed_functions[] = {
    // sleeping
    {"sleep", Instead::sleep_for}, {"usleep", Instead::sleep_for}, {"nanosleep", Instead::sleep_for},
    {"clock_nanosleep", Instead::sleep_for},
    // descriptors in blocking mode (and regular files for read/write)
    {"read"}, {"write"}, {"recv"}, {"send"}, {"accept"}, {"connect"}, {"poll"}, {"select"},
    {"recvfrom"}, {"recvmsg"}, {"sendto"}, {"sendmsg"}, {"readv"}, {"writev"},
    // polling with signal masks, an event loop nested in a fiber
    {"ppoll"}, {"pselect"}, {"epoll_wait"}, {"epoll_pwait"},
    // regular files
    {"open"}, {"fopen"}, {"pread"}, {"pwrite"}, {"fsync"}, {"fdatasync"},
    // name resolution
    {"getaddrinfo", Instead::resolve}, {"gethostbyname", Instead::resolve},
    // processes
    {"system", Instead::run_process}, {"popen", Instead::run_process}, {"waitpid"}, {"wait4"},
    // file locks
    {"flock"}, {"fcntl"},
    // waits on other threads (only a real wait counts)
    {"sem_wait"}, {"pthread_join"}, {"pthread_mutex_lock"},
    // the C++ standard library's waits: condition variables; futexes
    // (std::future, counting_semaphore, latch, barrier, atomic::wait, from
    // syscall(SYS_futex, …)); std::shared_mutex; timed mutexes; semaphores
    {"pthread_cond_wait", Instead::future}, {"pthread_cond_timedwait", Instead::future},
    {"pthread_cond_clockwait", Instead::future}, {"futex", Instead::future},
    {"pthread_rwlock_rdlock"}, {"pthread_rwlock_wrlock"}, {"pthread_rwlock_timedrdlock"},
    {"pthread_rwlock_timedwrlock"}, {"pthread_rwlock_clockrdlock"}, {"pthread_rwlock_clockwrlock"},
    {"pthread_mutex_timedlock"}, {"pthread_mutex_clocklock"}, {"sem_timedwait"}, {"sem_clockwait"},
    // whole calls of known libraries (interposed only when the library is
    // loaded): the report names the call and its cooperative replacement
    {"curl_easy_perform", Instead::curl_or_http},
    // libpq, the PostgreSQL client library (stallwatch::pg is the cooperative
    // one): its synchronous calls; PQgetResult on a connection in blocking mode
    // whose result has not arrived; PQcancel, which waits for the server
    {"PQexec", Instead::pg}, {"PQexecParams", Instead::pg}, {"PQprepare", Instead::pg},
    {"PQexecPrepared", Instead::pg}, {"PQconnectdb", Instead::pg}, {"PQconnectdbParams", Instead::pg},
    {"PQgetResult", Instead::pg}, {"PQcancel", Instead::pg},
};

// The entry counted under `name`, or null when no interposer counts it.
constexpr const ProbedFunction* find_probed(std::string_view name) noexcept {
  const auto* found = std::find_if(std::begin(probed_functions), std::end(probed_functions),
                                   [&](const ProbedFunction& f) { return f.name == name; });
  return found == std::end(probed_functions) ? nullptr : found;
}

}  // namespace stallwatch::config
