// The loop-bound primitives (Semaphore, Event, Mutex, Channel) used where they
// do not belong: another loop or a plain thread gets wrong_loop; destroying
// one while fibers wait on it wakes them with primitive_destroyed (never a
// write into freed memory: run under ASan), or, from another thread, ends the
// process with a message naming it.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "stallwatch/io.hpp"
#include "stallwatch/loop.hpp"
#include "stallwatch/loop_handle.hpp"
#include "stallwatch/sync.hpp"

using namespace std::chrono_literals;
namespace sw = stallwatch;

TEST_CASE("an Event set from a plain thread throws wrong_loop instead of never waking its waiter") {
  sw::run([] {
    sw::Event ev;
    const std::string loop = "loop " + std::to_string(sw::this_loop_index());
    std::string message;
    std::thread([&] {
      try {
        ev.set();
      } catch (const sw::wrong_loop& e) {
        message = e.what();
      }
    }).join();
    CHECK(message == "stallwatch: Event::set: this Event belongs to " + loop +
                         " and was used from a thread that runs no loop; it works only on fibers of its own loop "
                         "(use SharedChannel, Future or LoopHandle::post to cross loops)");
    CHECK_FALSE(ev.is_set());
  });
}

TEST_CASE("every loop-bound primitive, used from a fiber of another loop, throws wrong_loop naming both loops") {
  std::promise<sw::LoopHandle> owner_loop;
  auto owner_handle = owner_loop.get_future().share();
  std::promise<void> done;
  auto done_future = done.get_future().share();
  sw::Semaphore* sem = nullptr;
  sw::Event* ev = nullptr;
  sw::Mutex* mutex = nullptr;
  sw::Channel<int>* ch = nullptr;
  sw::run_loops(2, [&](std::size_t i) {
    if (i == 0) {
      sw::Semaphore s(1);
      sw::Event e;
      sw::Mutex m;
      sw::Channel<int> c(1);
      sem = &s, ev = &e, mutex = &m, ch = &c;
      owner_loop.set_value(sw::this_loop());
      while (done_future.wait_for(0s) != std::future_status::ready) sw::sleep_for(1ms);
      return;
    }
    sw::LoopHandle owner = owner_handle.get();
    const std::string suffix = "belongs to loop " + std::to_string(owner.index()) + " and was used from loop " +
                               std::to_string(sw::this_loop_index());
    CHECK_THROWS_WITH_AS(sem->release(), doctest::Contains(("Semaphore::release: this Semaphore " + suffix).c_str()),
                         sw::wrong_loop);
    CHECK_THROWS_WITH_AS(sem->acquire(), doctest::Contains("Semaphore::acquire"), sw::wrong_loop);
    CHECK_THROWS_WITH_AS(ev->wait(), doctest::Contains(("Event::wait: this Event " + suffix).c_str()), sw::wrong_loop);
    CHECK_THROWS_WITH_AS(ev->set(), doctest::Contains("Event::set"), sw::wrong_loop);
    CHECK_THROWS_WITH_AS(mutex->lock(), doctest::Contains(("Mutex::lock: this Mutex " + suffix).c_str()), sw::wrong_loop);
    CHECK_THROWS_WITH_AS(ch->send(1), doctest::Contains(("Channel::send: this Channel " + suffix).c_str()), sw::wrong_loop);
    CHECK_THROWS_WITH_AS(ch->receive(), doctest::Contains("Channel::receive"), sw::wrong_loop);
    // The owner still uses them normally.
    CHECK(owner.submit([&] { return sem->try_acquire() && mutex->try_lock(); }).get());
    done.set_value();
  });
}

TEST_CASE("a Task joined or cancelled from another loop or a plain thread throws wrong_loop") {
  // Before: a join from another loop returned (task done) or parked its fiber
  // on the other loop's queue, to be woken from the wrong thread or never.
  std::promise<void> tasks_made;
  auto tasks_ready = tasks_made.get_future().share();
  std::promise<void> checked;
  auto checked_future = checked.get_future().share();
  sw::Task<int> finished;
  sw::Task<void> running;
  int owner_index = -1;
  sw::run_loops(2, [&](std::size_t i) {
    if (i == 0) {
      owner_index = sw::this_loop_index();
      sw::Event release;
      finished = sw::spawn([] { return 7; }, "finished");
      running = sw::spawn([&] { release.wait(); }, "running");
      sw::yield();
      REQUIRE(finished.done());
      tasks_made.set_value();
      while (checked_future.wait_for(0s) != std::future_status::ready) sw::sleep_for(1ms);
      release.set();
      CHECK(finished.join() == 7);  // its own loop still joins both
      running.join();
      return;
    }
    tasks_ready.wait();
    const std::string suffix = "this task runs on loop " + std::to_string(owner_index) +
                               " and was used from loop " + std::to_string(sw::this_loop_index());
    CHECK_THROWS_WITH_AS(finished.join(), doctest::Contains(("Task::join: " + suffix).c_str()), sw::wrong_loop);
    CHECK_THROWS_WITH_AS(running.join(sw::deadline_after(200ms)), doctest::Contains("Task::join"), sw::wrong_loop);
    CHECK_THROWS_WITH_AS(running.cancel(), doctest::Contains(("Task::cancel: " + suffix).c_str()), sw::wrong_loop);
    std::thread([&] {
      CHECK_THROWS_WITH_AS(finished.join(), doctest::Contains("used from a thread that runs no loop"),
                           sw::wrong_loop);
    }).join();
    CHECK(finished.valid());
    checked.set_value();
  });
}

TEST_CASE("a primitive made off any loop belongs to the first loop that uses it") {
  sw::Channel<int> ch(4);
  CHECK_THROWS_WITH_AS(ch.size(), doctest::Contains("belongs to no loop yet"), sw::wrong_loop);
  sw::run([&] {
    ch.send(1);
    CHECK(*ch.receive() == 1);
  });
  CHECK_THROWS_WITH_AS(ch.size(), doctest::Contains("belongs to loop"), sw::wrong_loop);
}

TEST_CASE("destroying a Channel while fibers wait on it wakes them with primitive_destroyed") {
  sw::run([] {
    auto ch = std::make_unique<sw::Channel<int>>(1);
    std::string receiver_error;
    auto receiver = sw::spawn([&] {
      try {
        ch->receive();
      } catch (const sw::primitive_destroyed& e) {
        receiver_error = e.what();
      }
    });
    auto sleeper = sw::spawn([&, raw = ch.get()] { raw->receive(sw::deadline_after(10s)); });
    sw::sleep_for(1ms);
    ch.reset();  // both parked on it
    receiver.join();
    CHECK(receiver_error ==
          "stallwatch: Channel::receive: the Channel was destroyed while this fiber waited on it");
    CHECK_THROWS_AS(sleeper.join(), sw::primitive_destroyed);  // its timer was removed with it
  });
}

TEST_CASE("destroyed under waiters, then the waiters cancelled: nothing touches the freed primitive") {
  // The reported bug: a Channel destroyed while a fiber waited, the waiter
  // cancelled later as run() drained, wrote 16 bytes into the freed channel.
  // Detached waiters, cancelled only by the drain; ASan checks every access.
  sw::run([] {
    auto sem = std::make_unique<sw::Semaphore>(0);
    auto ev = std::make_unique<sw::Event>();
    auto mutex = std::make_unique<sw::Mutex>();
    mutex->lock();
    auto ch = std::make_unique<sw::Channel<int>>(1);
    ch->send(0);  // full: a sender parks
    sw::spawn([s = sem.get()] { s->acquire(); });
    sw::spawn([e = ev.get()] { e->wait(); });
    sw::spawn([m = mutex.get()] { m->lock(); });
    sw::spawn([c = ch.get()] { c->send(1); });
    sw::yield();
    sem.reset();
    ev.reset();
    mutex.reset();
    ch.reset();
  });
}

#if !defined(__SANITIZE_THREAD__)
TEST_CASE("destroying a loop-bound primitive on another thread while fibers wait ends the process, naming it") {
  // In a child (TSan ends a forked child that starts threads): the waiters
  // cannot be reached from another thread, so the process ends loudly.
  int err_pipe[2];
  REQUIRE(pipe(err_pipe) == 0);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // doctest's crash handler and reporter stay the parent's: the child only dies.
    std::signal(SIGABRT, SIG_DFL);
    dup2(err_pipe[1], STDERR_FILENO);
    dup2(err_pipe[1], STDOUT_FILENO);
    sw::Options options;
    options.watchdog = false;
    sw::run(options, [] {
      auto* ev = new sw::Event;
      sw::spawn([ev] { ev->wait(); });
      sw::yield();
      std::thread([ev] { delete ev; }).join();
    });
    _exit(0);
  }
  close(err_pipe[1]);
  std::string err;
  char buf[512];
  for (ssize_t n; (n = read(err_pipe[0], buf, sizeof buf)) > 0;) err.append(buf, static_cast<std::size_t>(n));
  close(err_pipe[0]);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGABRT);
  CHECK(err.find("stallwatch: a Event was destroyed on another thread while fibers of its loop waited on it") !=
        std::string::npos);
}
#endif

#if !defined(__SANITIZE_THREAD__)
TEST_CASE("a raw fork() on a fiber: every stallwatch call in the child throws, pointing to in_process and run_process") {
  // Before: the child ran the parent's fibers on its copy of the loop and
  // took the parent's epoll events (the parent's reader then timed out).
  int data_pipe[2];
  int report_pipe[2];
  int err_pipe[2];
  REQUIRE(pipe(data_pipe) == 0);
  REQUIRE(pipe(report_pipe) == 0);
  REQUIRE(pipe(err_pipe) == 0);
  sw::Options options;
  options.watchdog = false;
  std::string report;
  std::string err;
  int status = 0;
  sw::run(options, [&] {
    auto reader = sw::spawn([&] {
      sw::wait_readable(data_pipe[0], sw::deadline_after(10s));
      char c = '?';
      return read(data_pipe[0], &c, 1) == 1 ? c : '?';
    });
    auto finished = sw::spawn([] { return 1; });
    sw::Event event;
    sw::yield();  // the reader is parked on the loop's epoll
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      dup2(err_pipe[1], STDERR_FILENO);
      std::string lines;
      const auto attempt = [&](auto&& call) {
        try {
          call();
          lines += "no error\n";
        } catch (const std::exception& e) {
          lines += e.what();
          lines += '\n';
        }
      };
      attempt([] { sw::sleep_for(1ms); });
      attempt([] { sw::yield(); });
      attempt([] { sw::spawn([] {}); });
      attempt([&] { event.set(); });
      attempt([&] { finished.join(); });
      attempt([] { sw::this_loop(); });
      attempt([&] { sw::wait_readable(data_pipe[0]); });
      attempt([] { sw::run([] {}); });
      (void)!write(report_pipe[1], lines.data(), lines.size());
      return;  // the fiber's copy ends: so does the child, saying why
    }
    close(report_pipe[1]);
    close(err_pipe[1]);
    sw::sleep_for(100ms);  // the child has had its chance to take the event
    REQUIRE(write(data_pipe[1], "x", 1) == 1);
    CHECK(reader.join() == 'x');
    CHECK(finished.join() == 1);
    char buf[4096];
    for (ssize_t n; (n = read(report_pipe[0], buf, sizeof buf)) > 0;) report.append(buf, static_cast<std::size_t>(n));
    for (ssize_t n; (n = read(err_pipe[0], buf, sizeof buf)) > 0;) err.append(buf, static_cast<std::size_t>(n));
    REQUIRE(waitpid(child, &status, 0) == child);
  });
  for (int fd : {data_pipe[0], data_pipe[1], report_pipe[0], err_pipe[0]}) close(fd);
  const std::string advice =
      "this process is a child made by fork() on a fiber of loop 0, and the child's copy of that loop cannot run "
      "(it shares the parent's epoll and descriptors); run work in a child process with stallwatch::in_process, or "
      "a program with stallwatch::run_process";
  CHECK(report == "stallwatch: sleep: " + advice + "\nstallwatch: yield: " + advice + "\nstallwatch: spawn: " + advice +
                      "\nstallwatch: Event::set: " + advice + "\nstallwatch: Task::join: " + advice +
                      "\nstallwatch: this_loop: " + advice + "\nstallwatch: wait_readable: " + advice +
                      "\nstallwatch: run: " + advice + "\n");
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 70);
  CHECK(err.find("stallwatch: fiber 1 \"main\" returned in the child it forked; " + advice +
                 ". The child ends here with status 70.") != std::string::npos);
}
#endif
