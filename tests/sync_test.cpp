// Semaphore, Event, Mutex, Channel: parking, hand-off, deadlines, close.
#include <doctest/doctest.h>

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "stallwatch/loop.hpp"
#include "stallwatch/sync.hpp"

using namespace std::chrono_literals;
namespace sw = stallwatch;

TEST_CASE("Semaphore bounds concurrency and hands units to waiters in order") {
  sw::run([] {
    sw::Semaphore sem(2);
    int inside = 0, peak = 0;
    std::vector<sw::Task<void>> tasks;
    for (int i = 0; i < 10; ++i) {
      tasks.push_back(sw::spawn([&] {
        sem.acquire();
        peak = std::max(peak, ++inside);
        sw::sleep_for(1ms);
        --inside;
        sem.release();
      }));
    }
    for (auto& t : tasks) t.join();
    CHECK(peak == 2);
    CHECK(sem.available() == 2);
    CHECK(sem.try_acquire());
  });
}

TEST_CASE("Semaphore::acquire past its deadline throws and leaves the count intact") {
  sw::run([] {
    sw::Semaphore sem(0);
    CHECK_THROWS_WITH_AS(sem.acquire(sw::deadline_after(2ms)), "stallwatch: Semaphore::acquire: deadline exceeded",
                         sw::deadline_exceeded);
    sem.release();
    CHECK(sem.available() == 1);
  });
}

TEST_CASE("Event wakes every waiter and stays set") {
  sw::run([] {
    sw::Event ev;
    int woken = 0;
    std::vector<sw::Task<void>> tasks;
    for (int i = 0; i < 5; ++i) tasks.push_back(sw::spawn([&] { ev.wait(); ++woken; }));
    sw::yield();
    CHECK(woken == 0);
    ev.set();
    for (auto& t : tasks) t.join();
    CHECK(woken == 5);
    ev.wait();  // already set: returns at once
    ev.clear();
    CHECK_THROWS_AS(ev.wait(sw::deadline_after(1ms)), sw::deadline_exceeded);
  });
}

TEST_CASE("Mutex serialises critical sections that park") {
  sw::run([] {
    sw::Mutex mutex;
    std::string log;
    auto worker = [&](char c) {
      std::lock_guard<sw::Mutex> lock(mutex);
      log += c;
      sw::sleep_for(1ms);
      log += c;
    };
    auto a = sw::spawn([&] { worker('a'); });
    auto b = sw::spawn([&] { worker('b'); });
    a.join();
    b.join();
    CHECK(log == "aabb");
    CHECK(mutex.try_lock());
    CHECK_THROWS_AS(mutex.lock(sw::deadline_after(1ms)), sw::deadline_exceeded);
    mutex.unlock();
  });
}

TEST_CASE("Channel is bounded, FIFO, and drains after close") {
  sw::run([] {
    sw::Channel<int> ch(2);
    std::vector<int> got;
    auto consumer = sw::spawn([&] {
      while (auto v = ch.receive()) got.push_back(*v);
    });
    auto producer = sw::spawn([&] {
      for (int i = 0; i < 10; ++i) {
        ch.send(i);
        CHECK(ch.size() <= 2);
      }
      ch.close();
    });
    producer.join();
    consumer.join();
    CHECK(got == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    CHECK_THROWS_AS(ch.send(1), sw::channel_closed);
  });
}

TEST_CASE("Channel receive and send honour deadlines") {
  sw::run([] {
    sw::Channel<std::string> ch(1);
    CHECK_THROWS_AS(ch.receive(sw::deadline_after(1ms)), sw::deadline_exceeded);
    ch.send("x");
    CHECK_THROWS_AS(ch.send("y", sw::deadline_after(1ms)), sw::deadline_exceeded);
    CHECK(ch.receive() == std::optional<std::string>("x"));
  });
}

TEST_CASE("a cancelled waiter leaves the queue and the next waiter is served") {
  sw::run([] {
    sw::Semaphore sem(0);
    auto first = sw::spawn([&] { sem.acquire(); return 1; });
    auto second = sw::spawn([&] { sem.acquire(); return 2; });
    sw::yield();
    first.cancel();
    CHECK_THROWS_AS(first.join(), sw::cancelled);
    sem.release();
    CHECK(second.join() == 2);
  });
}
