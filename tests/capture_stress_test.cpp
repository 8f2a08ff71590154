// 100,000 stack captures forced on a loop thread while its fibers malloc,
// throw and catch, and switch: no crash, no deadlock, every request answered.
#include <doctest/doctest.h>

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "stallwatch/loop.hpp"
#include "watchdog/capture_signal.hpp"

using namespace std::chrono_literals;
namespace sw = stallwatch;
namespace wd = stallwatch::watchdog;

TEST_CASE("100,000 captures while the loop mallocs, throws and switches fibers") {
  constexpr int captures = 100'000;
  sw::Options options;
  options.threshold = std::chrono::milliseconds(600'000);  // the watchdog itself never samples
  options.log_sink = [](std::string_view) {};
  int outcomes[4] = {};
  int timeouts = 0;
  sw::run(options, [&] {
    wd::CaptureSlot* slot = wd::tls_capture_slot;
    REQUIRE(slot != nullptr);
    const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
    std::atomic<bool> stop{false};
    std::atomic<bool> done{false};

    std::thread forcer([&] {
      for (int i = 0; i < captures; ++i) {
        const std::uint64_t request = wd::request_capture(*slot, tid, wd::default_capture_signal());
        if (request != 0 && wd::wait_for_capture(*slot, request, 2'000'000'000ull)) {
          ++outcomes[static_cast<int>(slot->outcome)];
        } else {
          ++timeouts;
        }
      }
      done = true;
    });

    auto allocator = sw::spawn([&] {
      std::uint64_t total = 0;
      while (!stop) {
        auto v = std::make_unique<std::vector<int>>(64 + total % 512, 1);
        void* p = std::malloc(32 + total % 4096);
        total += v->size();
        std::free(p);
        sw::yield();
      }
      return total;
    }, "allocator");
    auto thrower = sw::spawn([&] {
      // A throw costs about a microsecond, a yield tens of nanoseconds; under
      // ThreadSanitizer the yields slow down far more than the uninstrumented
      // unwinder, and one throw in 8 turns left 0.5% of captures in an
      // unwind. So TSan throws every turn, the other builds one turn in 8:
      // both kinds of capture stay frequent.
#if defined(__SANITIZE_THREAD__)
      constexpr unsigned turns_per_throw = 1;
#else
      constexpr unsigned turns_per_throw = 8;
#endif
      int caught = 0;
      for (unsigned turn = 0; !stop; ++turn) {
        if (turn % turns_per_throw == 0) {
          try {
            throw std::runtime_error(std::string(40, 'x'));
          } catch (const std::runtime_error&) {
            ++caught;
          }
        }
        sw::yield();
      }
      return caught;
    }, "thrower");
    auto switcher = sw::spawn([&] {
      while (!stop) sw::yield();
    }, "switcher");

    while (!done) sw::sleep_for(1ms);
    stop = true;
    CHECK(allocator.join() > 0);
    CHECK(thrower.join() > 0);
    switcher.join();
    forcer.join();
  });
  MESSAGE("captured " << outcomes[0] << ", in switch " << outcomes[1] << ", exception unwinding " << outcomes[2]
                      << ", unwind failed " << outcomes[3] << ", timeouts " << timeouts);
  CHECK(timeouts == 0);
  CHECK(outcomes[0] + outcomes[1] + outcomes[2] + outcomes[3] == captures);
  // Captures that land in an unwind are refused; the rest must be real stacks.
  CHECK(outcomes[0] >= captures / 100);
  CHECK(outcomes[2] >= captures / 100);
  CHECK(outcomes[3] == 0);
}
