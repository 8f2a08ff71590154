// stall_example: a program that stalls its loop on purpose, to see reports.
//
//   stall_example cpu          a fiber computes for 300 ms
//   stall_example block        a fiber sleeps in usleep for 300 ms
//   stall_example many N       N stalls of 80 ms, one after another
//
// Everything else comes from the STALLWATCH_* environment (threshold, format,
// strict mode, rate limit). Exits 0 after the stalls.
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "stallwatch/loop.hpp"

namespace {

std::uint64_t sink = 0;

std::chrono::steady_clock::time_point after(int ms) {
  return std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
}

__attribute__((noinline)) void compute_for(int ms) {
  const auto end = after(ms);
  std::uint64_t x = 1;
  while (std::chrono::steady_clock::now() < end) {
    for (int i = 0; i < 1000; ++i) x = x * 6364136223846793005ull + 1;
  }
  sink += x;
}

__attribute__((noinline)) void sleep_blocking_for(int ms) {
  const auto end = after(ms);
  while (std::chrono::steady_clock::now() < end) usleep(20'000);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string_view mode = argc > 1 ? argv[1] : "cpu";
  const int count = argc > 2 ? std::atoi(argv[2]) : 1;
  if (mode != "cpu" && mode != "block" && mode != "many") {
    std::fprintf(stderr, "usage: stall_example cpu|block|many N\n");
    return 2;
  }
  stallwatch::run([&] {
    if (mode == "cpu") {
      stallwatch::spawn([] { compute_for(300); }, "cpu hog").join();
    } else if (mode == "block") {
      stallwatch::spawn([] { sleep_blocking_for(300); }, "sleepy").join();
    } else {
      for (int i = 0; i < count; ++i) {
        compute_for(80);
        stallwatch::sleep_for(std::chrono::milliseconds(1));  // parks: the next stall is a new slice
      }
    }
  });
  return 0;
}
