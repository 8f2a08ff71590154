// A program that makes known blocking calls on and off a loop, built without
// the probes (they come in through LD_PRELOAD) and once more linked with them.
// tests/probes_test.cpp runs it and reads what stallwatch logged on stderr.
//
//   probes_blocking_demo each       every probed function once on a loop fiber
//   probes_blocking_demo quiet      the same calls off the loop (main thread, a
//                                   plain thread, in_thread, in_process), and non-blocking
//                                   forms of them on the loop
//   probes_blocking_demo allow      allow_blocking scopes, with another fiber
//                                   running while the allowed one is parked
//   probes_blocking_demo usleep     one usleep on a loop fiber, then "after usleep"
//   probes_blocking_demo repeat     usleep five times from one call site, once from another,
//                                   then prints stallwatch_blocking_calls_total{function="usleep"}
//   probes_blocking_demo long-sleep one usleep of 300 ms under a 50 ms threshold
//   probes_blocking_demo stalled-waits
//                                   each wait a signal would end early (sleep, usleep, nanosleep,
//                                   clock_nanosleep, poll, ppoll, select, pselect, epoll_wait,
//                                   epoll_pwait) on a fiber of its own, stalled past the 50 ms
//                                   threshold; prints how long each took and what it returned
//
// Exit status 0 when the scenario ran, 2 when run() threw (the message goes
// to stderr), 70 when strict mode ended it.
#include <fcntl.h>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <linux/futex.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <shared_mutex>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "stallwatch/allow_blocking.hpp"
#include "stallwatch/features.hpp"
#if STALLWATCH_HAVE_CURL
#include <curl/curl.h>
#endif
#include "stallwatch/in_process.hpp"
#include "stallwatch/in_thread.hpp"
#include "stallwatch/loop.hpp"
#include "stallwatch/metrics.hpp"

namespace {

using namespace std::chrono_literals;

// Long enough that the other side is surely waiting, far below the threshold.
constexpr auto wait_time = 200ms;

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("probes_blocking_demo: ") + what + ": " + std::strerror(errno));
}

// Every wait here is far below the stall threshold.
stallwatch::Options options() {
  stallwatch::Options o;
  o.threshold = std::chrono::seconds(10);
  o.metrics_addr = "off";
  return o;
}

std::string temp_path() { return "/tmp/probes_blocking_demo." + std::to_string(getpid()); }

struct Pipe {
  int fds[2];
  explicit Pipe(int flags = 0) { check(pipe2(fds, flags) == 0, "pipe2"); }
  ~Pipe() {
    close(fds[0]);
    close(fds[1]);
  }
};

void sleeps() {
  sleep(0);
  usleep(1);
  const timespec tiny{0, 1000};
  nanosleep(&tiny, nullptr);
  clock_nanosleep(CLOCK_MONOTONIC, 0, &tiny, nullptr);
}

void descriptors() {
  Pipe p;
  char c = 'x';
  check(write(p.fds[1], &c, 1) == 1, "write");
  pollfd pfd{p.fds[0], POLLIN, 0};
  check(poll(&pfd, 1, 1000) == 1, "poll");
  fd_set set;
  FD_ZERO(&set);
  FD_SET(p.fds[0], &set);
  timeval tv{1, 0};
  check(select(p.fds[0] + 1, &set, nullptr, nullptr, &tv) == 1, "select");
  check(read(p.fds[0], &c, 1) == 1, "read");

  int pair[2];
  check(socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0, "socketpair");
  check(send(pair[0], &c, 1, 0) == 1, "send");
  check(recv(pair[1], &c, 1, 0) == 1, "recv");
  close(pair[0]);
  close(pair[1]);

  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  check(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0, "bind");
  check(listen(listener, 4) == 0, "listen");
  check(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0, "getsockname");
  const int client = socket(AF_INET, SOCK_STREAM, 0);
  check(connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0, "connect");
  const int accepted = accept(listener, nullptr, nullptr);
  check(accepted >= 0, "accept");
  close(accepted);
  close(client);
  close(listener);
}

// Socket calls with addresses and messages, vector I/O, and the polls with
// signal masks, each on a descriptor in blocking mode or with a timeout.
void more_descriptors() {
  int pair[2];
  check(socketpair(AF_UNIX, SOCK_DGRAM, 0, pair) == 0, "socketpair");
  char c = 'x';
  check(sendto(pair[0], &c, 1, 0, nullptr, 0) == 1, "sendto");
  check(recvfrom(pair[1], &c, 1, 0, nullptr, nullptr) == 1, "recvfrom");
  iovec iov{&c, 1};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  check(sendmsg(pair[0], &msg, 0) == 1, "sendmsg");
  check(recvmsg(pair[1], &msg, 0) == 1, "recvmsg");
  close(pair[0]);
  close(pair[1]);

  Pipe p;
  check(writev(p.fds[1], &iov, 1) == 1, "writev");
  const timespec second{1, 0};
  pollfd pfd{p.fds[0], POLLIN, 0};
  check(ppoll(&pfd, 1, &second, nullptr) == 1, "ppoll");
  fd_set set;
  FD_ZERO(&set);
  FD_SET(p.fds[0], &set);
  check(pselect(p.fds[0] + 1, &set, nullptr, nullptr, &second, nullptr) == 1, "pselect");
  const int ep = epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  check(epoll_ctl(ep, EPOLL_CTL_ADD, p.fds[0], &ev) == 0, "epoll_ctl");
  check(epoll_wait(ep, &ev, 1, 1000) == 1, "epoll_wait");
  check(epoll_pwait(ep, &ev, 1, 1000, nullptr) == 1, "epoll_pwait");
  close(ep);
  check(readv(p.fds[0], &iov, 1) == 1, "readv");
}

void files() {
  const std::string path = temp_path();
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  check(fd >= 0, "open");
  char buf[4] = "abc";
  check(pwrite(fd, buf, 3, 0) == 3, "pwrite");
  check(pread(fd, buf, 3, 0) == 3, "pread");
  check(fsync(fd) == 0, "fsync");
  check(fdatasync(fd) == 0, "fdatasync");
  check(flock(fd, LOCK_EX) == 0, "flock");
  check(flock(fd, LOCK_UN) == 0, "flock unlock");
  struct flock lock{};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  check(fcntl(fd, F_SETLKW, &lock) == 0, "fcntl F_SETLKW");
  lock.l_type = F_UNLCK;
  check(fcntl(fd, F_SETLK, &lock) == 0, "fcntl F_SETLK");
  close(fd);
  FILE* f = fopen(path.c_str(), "r");
  check(f != nullptr, "fopen");
  std::fclose(f);
  unlink(path.c_str());
}

void names() {
  addrinfo hints{};
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  check(getaddrinfo("127.0.0.1", "80", &hints, &res) == 0, "getaddrinfo");
  freeaddrinfo(res);
  check(gethostbyname("127.0.0.1") != nullptr, "gethostbyname");
}

pid_t child_that_exits() {
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  check(pid > 0, "fork");
  return pid;
}

void processes() {
  check(system("true") == 0, "system");
  FILE* p = popen("true", "r");
  check(p != nullptr, "popen");
  pclose(p);
  int status = 0;
  check(waitpid(child_that_exits(), &status, 0) > 0, "waitpid");
  check(wait4(child_that_exits(), &status, 0, nullptr) > 0, "wait4");
}

// Each of these really waits: another thread holds what is asked for.
void thread_waits() {
  sem_t sem;
  sem_init(&sem, 0, 0);
  std::thread poster([&] {
    std::this_thread::sleep_for(wait_time);
    sem_post(&sem);
  });
  check(sem_wait(&sem) == 0, "sem_wait");
  poster.join();
  sem_destroy(&sem);

  pthread_t sleeper;
  check(pthread_create(
            &sleeper, nullptr,
            [](void*) -> void* {
              std::this_thread::sleep_for(wait_time);
              return nullptr;
            },
            nullptr) == 0,
        "pthread_create");
  check(pthread_join(sleeper, nullptr) == 0, "pthread_join");

  static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
  std::atomic<bool> held{false};
  std::thread holder([&] {
    pthread_mutex_lock(&mutex);
    held = true;
    std::this_thread::sleep_for(wait_time);
    pthread_mutex_unlock(&mutex);
  });
  while (!held) sched_yield();
  check(pthread_mutex_lock(&mutex) == 0, "pthread_mutex_lock");
  pthread_mutex_unlock(&mutex);
  holder.join();
}

// An absolute deadline `ms` from now on `clock`.
timespec deadline_in(clockid_t clock, long ms) {
  timespec t;
  clock_gettime(clock, &t);
  t.tv_nsec += ms * 1'000'000;
  t.tv_sec += t.tv_nsec / 1'000'000'000;
  t.tv_nsec %= 1'000'000'000;
  return t;
}

// The standard library's waits, each really waiting: another thread
// notifies, sets the value or holds the lock; or the deadline runs out.
void standard_waits() {
  {
    std::mutex m;
    std::condition_variable cv;
    bool ready = false;
    std::thread notifier([&] {
      std::this_thread::sleep_for(wait_time);
      const std::lock_guard lock(m);
      ready = true;
      cv.notify_one();
    });
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return ready; });  // pthread_cond_wait
    lock.unlock();
    notifier.join();
  }
  {
    pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
    pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mutex);
    timespec t = deadline_in(CLOCK_REALTIME, 5);
    check(pthread_cond_timedwait(&cond, &mutex, &t) == ETIMEDOUT, "pthread_cond_timedwait");
    t = deadline_in(CLOCK_MONOTONIC, 5);
    check(pthread_cond_clockwait(&cond, &mutex, CLOCK_MONOTONIC, &t) == ETIMEDOUT, "pthread_cond_clockwait");
    pthread_mutex_unlock(&mutex);
  }
  {
    std::promise<int> promise;
    std::future<int> future = promise.get_future();
    std::thread setter([&] {
      std::this_thread::sleep_for(wait_time);
      promise.set_value(1);
    });
    check(future.get() == 1, "future.get");  // futex
    setter.join();
  }
  {
    std::shared_mutex shared;
    std::atomic<bool> held{false};
    std::thread writer([&] {
      const std::unique_lock lock(shared);
      held = true;
      std::this_thread::sleep_for(wait_time);
    });
    while (!held) sched_yield();
    { const std::shared_lock lock(shared); }  // pthread_rwlock_rdlock
    writer.join();
    held = false;
    std::thread reader([&] {
      const std::shared_lock lock(shared);
      held = true;
      std::this_thread::sleep_for(wait_time);
    });
    while (!held) sched_yield();
    { const std::unique_lock lock(shared); }  // pthread_rwlock_wrlock
    reader.join();
  }
  {
    // Held by another thread while the timed forms time out.
    static pthread_rwlock_t rwlock = PTHREAD_RWLOCK_INITIALIZER;
    static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
    std::atomic<bool> held{false};
    std::thread holder([&] {
      pthread_rwlock_wrlock(&rwlock);
      pthread_mutex_lock(&mutex);
      held = true;
      std::this_thread::sleep_for(wait_time);
      pthread_mutex_unlock(&mutex);
      pthread_rwlock_unlock(&rwlock);
    });
    while (!held) sched_yield();
    timespec t = deadline_in(CLOCK_REALTIME, 5);
    check(pthread_rwlock_timedrdlock(&rwlock, &t) == ETIMEDOUT, "pthread_rwlock_timedrdlock");
    t = deadline_in(CLOCK_REALTIME, 5);
    check(pthread_rwlock_timedwrlock(&rwlock, &t) == ETIMEDOUT, "pthread_rwlock_timedwrlock");
    t = deadline_in(CLOCK_MONOTONIC, 5);
    check(pthread_rwlock_clockrdlock(&rwlock, CLOCK_MONOTONIC, &t) == ETIMEDOUT, "pthread_rwlock_clockrdlock");
    t = deadline_in(CLOCK_MONOTONIC, 5);
    check(pthread_rwlock_clockwrlock(&rwlock, CLOCK_MONOTONIC, &t) == ETIMEDOUT, "pthread_rwlock_clockwrlock");
    t = deadline_in(CLOCK_REALTIME, 5);
    check(pthread_mutex_timedlock(&mutex, &t) == ETIMEDOUT, "pthread_mutex_timedlock");
    t = deadline_in(CLOCK_MONOTONIC, 5);
    check(pthread_mutex_clocklock(&mutex, CLOCK_MONOTONIC, &t) == ETIMEDOUT, "pthread_mutex_clocklock");
    holder.join();
  }
  {
    sem_t sem;
    sem_init(&sem, 0, 0);
    timespec t = deadline_in(CLOCK_REALTIME, 5);
    check(sem_timedwait(&sem, &t) == -1 && errno == ETIMEDOUT, "sem_timedwait");
    t = deadline_in(CLOCK_MONOTONIC, 5);
    check(sem_clockwait(&sem, CLOCK_MONOTONIC, &t) == -1 && errno == ETIMEDOUT, "sem_clockwait");
    sem_destroy(&sem);
  }
}

// A whole libcurl transfer (of /dev/null, so it waits for nothing): its
// report is curl_easy_perform, and nothing curl does inside is reported again.
void libraries() {
#if STALLWATCH_HAVE_CURL
  CURL* easy = curl_easy_init();
  curl_easy_setopt(easy, CURLOPT_URL, "file:///dev/null");
  check(curl_easy_perform(easy) == CURLE_OK, "curl_easy_perform");
  curl_easy_cleanup(easy);
#endif
}

void every_probed_call() {
  libraries();
  sleeps();
  descriptors();
  more_descriptors();
  files();
  names();
  processes();
  thread_waits();
  standard_waits();
}

// The forms of standard_waits and more_descriptors that never wait: free
// locks, ready values, deadlines passed, zero timeouts, futex wakes.
void non_waiting_standard_forms() {
  pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
  pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&mutex);
  const timespec past{0, 0};
  check(pthread_cond_timedwait(&cond, &mutex, &past) == ETIMEDOUT, "pthread_cond_timedwait passed");
  check(pthread_cond_clockwait(&cond, &mutex, CLOCK_MONOTONIC, &past) == ETIMEDOUT, "pthread_cond_clockwait passed");
  pthread_mutex_unlock(&mutex);

  std::promise<int> promise;
  std::future<int> future = promise.get_future();
  promise.set_value(1);
  check(future.get() == 1, "future.get ready");
  std::uint32_t word = 0;
  check(syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0) == 0, "futex wake");
  const timespec zero{0, 0};
  check(syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &zero, nullptr, 0) == -1 && errno == ETIMEDOUT,
        "futex wait, zero timeout");
  check(syscall(SYS_getpid) == getpid(), "syscall getpid");

  std::shared_mutex shared;
  { const std::shared_lock lock(shared); }
  { const std::unique_lock lock(shared); }
  pthread_rwlock_t rwlock = PTHREAD_RWLOCK_INITIALIZER;
  const timespec later = deadline_in(CLOCK_REALTIME, 1000);
  check(pthread_rwlock_timedrdlock(&rwlock, &later) == 0, "pthread_rwlock_timedrdlock free");
  pthread_rwlock_unlock(&rwlock);
  check(pthread_rwlock_timedwrlock(&rwlock, &later) == 0, "pthread_rwlock_timedwrlock free");
  pthread_rwlock_unlock(&rwlock);
  check(pthread_mutex_timedlock(&mutex, &later) == 0, "pthread_mutex_timedlock free");
  pthread_mutex_unlock(&mutex);
  sem_t sem;
  sem_init(&sem, 0, 1);
  check(sem_timedwait(&sem, &later) == 0, "sem_timedwait available");
  sem_destroy(&sem);

  Pipe p(O_NONBLOCK);
  char c = 'x';
  iovec iov{&c, 1};
  check(writev(p.fds[1], &iov, 1) == 1, "writev");
  check(readv(p.fds[0], &iov, 1) == 1, "readv");
  pollfd pfd{p.fds[0], POLLIN, 0};
  check(ppoll(&pfd, 1, &zero, nullptr) == 0, "ppoll");
  check(pselect(0, nullptr, nullptr, nullptr, &zero, nullptr) == 0, "pselect");
  const int ep = epoll_create1(0);
  epoll_event ev{};
  check(epoll_wait(ep, &ev, 1, 0) == 0, "epoll_wait");
  check(epoll_pwait(ep, &ev, 1, 0, nullptr) == 0, "epoll_pwait");
  close(ep);
  int pair[2];
  check(socketpair(AF_UNIX, SOCK_DGRAM, 0, pair) == 0, "socketpair");
  check(sendto(pair[0], &c, 1, MSG_DONTWAIT, nullptr, 0) == 1, "sendto");
  check(recvfrom(pair[1], &c, 1, MSG_DONTWAIT, nullptr, nullptr) == 1, "recvfrom");
  close(pair[0]);
  close(pair[1]);
}

// The calls of every_probed_call in forms that never wait.
void non_blocking_forms() {
  Pipe p(O_NONBLOCK);
  char c = 'x';
  check(write(p.fds[1], &c, 1) == 1, "write");
  check(read(p.fds[0], &c, 1) == 1, "read");
  check(read(p.fds[0], &c, 1) == -1 && errno == EAGAIN, "read EAGAIN");
  pollfd pfd{p.fds[0], POLLIN, 0};
  check(poll(&pfd, 1, 0) == 0, "poll");
  timeval zero{0, 0};
  check(select(0, nullptr, nullptr, nullptr, &zero) == 0, "select");

  int pair[2];
  check(socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0, "socketpair");
  check(send(pair[0], &c, 1, MSG_DONTWAIT) == 1, "send");
  check(recv(pair[1], &c, 1, MSG_DONTWAIT) == 1, "recv");
  close(pair[0]);
  close(pair[1]);

  const int null = open("/dev/null", O_WRONLY);  // not a regular file
  check(null >= 0, "open /dev/null");
  close(null);

  int status = 0;
  const pid_t pid = child_that_exits();
  check(waitpid(pid, &status, WNOHANG) >= 0, "waitpid WNOHANG");
  check(wait4(-1, &status, WNOHANG, nullptr) >= 0 || errno == ECHILD, "wait4 WNOHANG");

  sem_t sem;
  sem_init(&sem, 0, 1);
  check(sem_wait(&sem) == 0, "sem_wait");  // available: no wait
  sem_destroy(&sem);
  static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
  check(pthread_mutex_lock(&mutex) == 0, "pthread_mutex_lock");  // free: no wait
  pthread_mutex_unlock(&mutex);
  non_waiting_standard_forms();

  // stallwatch's own waits, and its own writes: a detached fiber that throws
  // is logged (a write to stderr) from the ending fiber itself.
  stallwatch::spawn([] { throw std::runtime_error("nobody joins this fiber"); }, "thrower");
  stallwatch::sleep_for(1ms);
  stallwatch::yield();
  stallwatch::in_thread([] {});
  // Reap the child without blocking the loop.
  stallwatch::in_thread([pid] {
    int st = 0;
    waitpid(pid, &st, 0);
  });
}

int every_probed_call_in_child() {
  every_probed_call();
  return 0;
}

int quiet() {
  stallwatch::start_process_server();
  every_probed_call();  // on this plain thread, before any loop
  return stallwatch::run(options(), [] {
    std::thread plain(every_probed_call);
    stallwatch::in_thread([&] { plain.join(); });
    stallwatch::in_thread(every_probed_call);
    check(stallwatch::in_process(every_probed_call_in_child) == 0, "in_process");
    stallwatch::spawn(non_blocking_forms, "non-blocking").join();
    return 0;
  });
}

int allow() {
  return stallwatch::run(options(), [] {
    auto allowed = stallwatch::spawn(
        [] {
          stallwatch::allow_blocking outer;
          usleep(1);
          {
            stallwatch::allow_blocking inner;
            usleep(1);
          }
          stallwatch::sleep_for(50ms);  // the other fiber runs meanwhile, still checked
          usleep(1);
        },
        "allowed");
    auto checked = stallwatch::spawn(
        [] {
          const timespec tiny{0, 1000};
          nanosleep(&tiny, nullptr);
        },
        "checked");
    allowed.join();
    checked.join();
    const timespec tiny{0, 1000};
    clock_nanosleep(CLOCK_MONOTONIC, 0, &tiny, nullptr);  // after the scope: checked again
    return 0;
  });
}

int one_usleep() {
  return stallwatch::run(options(), [] {
    stallwatch::spawn(
        [] {
          usleep(1);
          std::printf("after usleep\n");
        },
        "caller")
        .join();
    return 0;
  });
}

void usleep_here() { usleep(1); }
void usleep_there() { usleep(1); }

// stallwatch_blocking_calls_total{function}, as a scrape would read it.
double blocking_calls_total(std::string_view function) {
  for (const auto& family : stallwatch::metrics_collectable()->Collect()) {
    if (family.name != "stallwatch_blocking_calls_total") continue;
    for (const auto& metric : family.metric) {
      for (const auto& label : metric.label) {
        if (label.name == "function" && label.value == function) return metric.counter.value;
      }
    }
  }
  return 0;
}

int repeat() {
  const int status = stallwatch::run(options(), [] {
    for (int i = 0; i < 5; ++i) usleep_here();
    usleep_there();
    return 0;
  });
  std::printf("stallwatch_blocking_calls_total{function=\"usleep\"} %g\n", blocking_calls_total("usleep"));
  return status;
}

// A 300 ms usleep on the loop, 50 ms threshold: a stall the watchdog samples
// at about 50, 100 and 200 ms. Prints how long the usleep really took.
int long_sleep() {
  stallwatch::Options o = options();
  o.threshold = std::chrono::milliseconds(50);
  return stallwatch::run(o, [] {
    stallwatch::spawn(
        [] {
          const auto start = std::chrono::steady_clock::now();
          usleep(300'000);
          const auto slept = std::chrono::duration_cast<std::chrono::milliseconds>(
              std::chrono::steady_clock::now() - start);
          std::printf("slept %lld ms\n", static_cast<long long>(slept.count()));
        },
        "sleeper")
        .join();
    return 0;
  });
}

// ---- stalled-waits ----

// Every wait below asks for this long (sleep: one second), far past the
// threshold, so the watchdog samples each at about 50, 100 and 200 ms.
constexpr int wait_ms = 300;
constexpr timespec wait_timespec{0, wait_ms * 1'000'000};

// Runs `call` on a fiber named `name`, alone in its slice, and prints
//   wait NAME line LINE took MS ms returned R errno E
// LINE is the line of the call, which the stall report's frame #0 must name.
void timed_wait(const char* name, int line, const std::function<long()>& call) {
  stallwatch::spawn(
      [&] {
        errno = 0;
        const auto start = std::chrono::steady_clock::now();
        const long result = call();
        const int error = errno;
        const auto took =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
        std::printf("wait %s line %d took %lld ms returned %ld errno %d\n", name, line,
                    static_cast<long long>(took.count()), result, error);
        std::fflush(stdout);
      },
      name)
      .join();
}

// The call and __LINE__ on one line: the line the report names.
#define STALLED_WAIT(name, call) timed_wait(name, __LINE__, [&]() -> long { return call; })

int stalled_waits() {
  stallwatch::Options o = options();
  o.threshold = std::chrono::milliseconds(50);
  return stallwatch::run(o, [] {
    Pipe p;  // nothing is ever written: every wait on it times out
    pollfd pfd{p.fds[0], POLLIN, 0};
    fd_set set;
    const int epfd = epoll_create1(EPOLL_CLOEXEC);
    check(epfd >= 0, "epoll_create1");
    epoll_event interest{};
    interest.events = EPOLLIN;
    check(epoll_ctl(epfd, EPOLL_CTL_ADD, p.fds[0], &interest) == 0, "epoll_ctl");
    epoll_event events[4];
    sigset_t no_signals;
    sigemptyset(&no_signals);
    const auto read_set = [&] {
      FD_ZERO(&set);
      FD_SET(p.fds[0], &set);
      return &set;
    };
    timeval tv{};

    STALLED_WAIT("sleep", sleep(1));
    STALLED_WAIT("usleep", usleep(wait_ms * 1000));
    STALLED_WAIT("nanosleep", nanosleep(&wait_timespec, nullptr));
    STALLED_WAIT("clock_nanosleep", clock_nanosleep(CLOCK_MONOTONIC, 0, &wait_timespec, nullptr));
    STALLED_WAIT("poll", poll(&pfd, 1, wait_ms));
    STALLED_WAIT("ppoll", ppoll(&pfd, 1, &wait_timespec, nullptr));
    tv = timeval{0, wait_ms * 1000};
    STALLED_WAIT("select", select(p.fds[0] + 1, read_set(), nullptr, nullptr, &tv));
    STALLED_WAIT("pselect", pselect(p.fds[0] + 1, read_set(), nullptr, nullptr, &wait_timespec, &no_signals));
    STALLED_WAIT("epoll_wait", epoll_wait(epfd, events, 4, wait_ms));
    STALLED_WAIT("epoll_pwait", epoll_pwait(epfd, events, 4, wait_ms, &no_signals));
    close(epfd);
    return 0;
  });
}

int run_scenario(std::string_view scenario) {
  if (scenario == "each") {
    return stallwatch::run(options(), [] {
      stallwatch::spawn(every_probed_call, "probed").join();
      return 0;
    });
  }
  if (scenario == "quiet") return quiet();
  if (scenario == "allow") return allow();
  if (scenario == "usleep") return one_usleep();
  if (scenario == "repeat") return repeat();
  if (scenario == "long-sleep") return long_sleep();
  if (scenario == "stalled-waits") return stalled_waits();
  throw std::invalid_argument("probes_blocking_demo: unknown scenario " + std::string(scenario) +
                              " (accepted: each, quiet, allow, usleep, repeat, long-sleep, stalled-waits)");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s each|quiet|allow|usleep|repeat|long-sleep|stalled-waits\n", argv[0]);
    return 2;
  }
  int status = 2;
  try {
    status = run_scenario(argv[1]);
    std::printf("done %s\n", argv[1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
  }
  // Not through exit(): the watchdog's symbolizer warm-up thread may still be
  // inside libdw's debuginfod client (initializing libcurl and OpenSSL) while
  // exit handlers tear OpenSSL down, which crashes a short program now and then.
  std::fflush(nullptr);
  _exit(status);
}
