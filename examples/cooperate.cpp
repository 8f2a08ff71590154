// Fibers cooperating on one loop: a ticker, a pool of workers fed through a
// channel, a blocking call moved off the loop with in_thread, and collect().
// Built as `stallwatch-cooperate`; the README's quick-start example.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <stallwatch/stallwatch.hpp>

using namespace std::chrono_literals;

int main() {
  return stallwatch::run([] {
    stallwatch::Channel<int> jobs(16);
    auto ticker = stallwatch::spawn([] {
      for (int i = 1; i <= 3; ++i) {
        stallwatch::sleep_for(20ms);
        std::printf("tick %d\n", i);
      }
    }, "ticker");

    auto worker = stallwatch::spawn([&jobs] {
      int sum = 0;
      while (auto job = jobs.receive()) sum += *job;
      return sum;
    }, "worker");
    for (int i = 1; i <= 100; ++i) jobs.send(i);
    jobs.close();

    // A blocking call runs on the offload pool; the ticker keeps ticking.
    stallwatch::in_thread([] { usleep(30'000); });

    auto [a, b] = stallwatch::collect([] { stallwatch::sleep_for(10ms); return 1; },
                                      [] { return 2; });
    ticker.join();
    std::printf("sum=%d collect=%d\n", worker.join(), a + b);
    return 0;
  });
}
