// SharedChannel<T>: Channel's calls between loops and plain threads, many
// senders and receivers, deadlines, cancellation, close.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <numeric>
#include <thread>
#include <vector>

#include "stallwatch/loop.hpp"
#include "stallwatch/loop_handle.hpp"
#include "stallwatch/shared_channel.hpp"

using namespace std::chrono_literals;
namespace sw = stallwatch;

TEST_CASE("SharedChannel on one loop: FIFO, capacity, try_send, close drains then ends") {
  sw::run([] {
    sw::SharedChannel<std::unique_ptr<int>> ch(2);
    CHECK(ch.capacity() == 2);
    ch.send(std::make_unique<int>(1));
    auto two = std::make_unique<int>(2);
    CHECK(ch.try_send(two));
    CHECK(two == nullptr);
    auto three = std::make_unique<int>(3);
    CHECK_FALSE(ch.try_send(three));  // full: the value stays with the caller
    CHECK(three != nullptr);
    CHECK(ch.size() == 2);
    CHECK_THROWS_WITH_AS(ch.send(std::make_unique<int>(4), sw::deadline_after(2ms)),
                         "stallwatch: SharedChannel::send: deadline exceeded", sw::deadline_exceeded);
    CHECK(**ch.receive() == 1);
    ch.close();
    CHECK(ch.closed());
    CHECK_THROWS_WITH_AS(ch.send(std::make_unique<int>(5)), "stallwatch: SharedChannel::send on a closed channel",
                         sw::channel_closed);
    CHECK_FALSE(ch.try_send(three));
    CHECK(**ch.receive() == 2);
    CHECK_FALSE(ch.receive().has_value());
  });
  sw::SharedChannel<int> zero(0);
  CHECK(zero.capacity() == 1);
}

TEST_CASE("SharedChannel between two loops: 200,000 values arrive once each, in order") {
  constexpr int count = 200'000;
  sw::SharedChannel<int> ch(64);
  long long sum = 0;
  bool in_order = true;
  sw::run_loops(2, [&](std::size_t i) {
    if (i == 0) {
      for (int v = 0; v < count; ++v) ch.send(v);
      ch.close();
    } else {
      int expected = 0;
      while (auto v = ch.receive(sw::deadline_after(30s))) {
        in_order = in_order && *v == expected++;
        sum += *v;
      }
    }
  });
  CHECK(in_order);
  CHECK(sum == static_cast<long long>(count) * (count - 1) / 2);
}

TEST_CASE("SharedChannel with senders and receivers on loops and plain threads: every value exactly once") {
  constexpr int per_sender = 50'000;
  constexpr int senders = 4;  // 2 loop fibers, 2 plain threads
  sw::SharedChannel<int> ch(16);
  std::mutex seen_mutex;
  std::vector<int> seen;
  std::atomic<int> senders_left{senders};
  auto send_range = [&](int s) {
    for (int v = s * per_sender; v < (s + 1) * per_sender; ++v) ch.send(v, sw::deadline_after(30s));
    if (--senders_left == 0) ch.close();
  };
  auto receive_all = [&] {
    std::vector<int> mine;
    while (auto v = ch.receive(sw::deadline_after(30s))) mine.push_back(*v);
    std::lock_guard<std::mutex> lock(seen_mutex);
    seen.insert(seen.end(), mine.begin(), mine.end());
  };
  std::thread thread_sender_a(send_range, 2), thread_sender_b(send_range, 3), thread_receiver(receive_all);
  sw::run_loops(2, [&](std::size_t i) {
    auto receiver = sw::spawn(receive_all);  // a receiving fiber on each loop
    send_range(static_cast<int>(i));
    receiver.join();
  });
  thread_sender_a.join();
  thread_sender_b.join();
  thread_receiver.join();
  std::sort(seen.begin(), seen.end());
  std::vector<int> expected(senders * per_sender);
  std::iota(expected.begin(), expected.end(), 0);
  CHECK(seen == expected);
}

TEST_CASE("SharedChannel waits: deadlines for fibers and threads, cancellation, close wakes waiters") {
  sw::SharedChannel<int> ch(1);
  CHECK_THROWS_WITH_AS(ch.receive(sw::deadline_after(3ms)), "stallwatch: SharedChannel::receive: deadline exceeded",
                       sw::deadline_exceeded);
  sw::run([&] {
    CHECK_THROWS_AS(ch.receive(sw::deadline_after(3ms)), sw::deadline_exceeded);
    auto receiver = sw::spawn([&] { return ch.receive(); });
    sw::sleep_for(2ms);
    receiver.cancel();
    CHECK_THROWS_AS(receiver.join(), sw::cancelled);
    // The cancelled waiter left no trace: the next value goes to the next receiver.
    ch.send(7);
    CHECK(*ch.receive(sw::deadline_after(1s)) == 7);
  });
  // A plain thread and a fiber both blocked in receive; close() from a third thread wakes both.
  std::atomic<int> ended{0};
  std::thread waiter([&] {
    CHECK_FALSE(ch.receive(sw::deadline_after(10s)).has_value());
    ++ended;
  });
  std::thread closer([&] {
    std::this_thread::sleep_for(20ms);
    ch.close();
  });
  sw::run([&] {
    CHECK_FALSE(ch.receive(sw::deadline_after(10s)).has_value());
    ++ended;
  });
  waiter.join();
  closer.join();
  CHECK(ended == 2);
}
