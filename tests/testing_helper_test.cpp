// STALLWATCH_FAIL_ON_STALL: registered with should_fail, because the one test
// case here stalls on purpose and the helper must fail it.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>

#include "stallwatch/loop.hpp"
#include "stallwatch/testing.hpp"

namespace {
std::uint64_t spin_sink = 0;
__attribute__((noinline)) void stall_for(std::chrono::milliseconds d) {
  const auto end = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < end) ++spin_sink;
}
}  // namespace

TEST_CASE("a stall inside the guarded scope fails the test case") {
  STALLWATCH_FAIL_ON_STALL();
  stallwatch::Options options;
  options.threshold = std::chrono::milliseconds(20);
  options.log_sink = [](std::string_view) {};
  stallwatch::run(options, [] { stall_for(std::chrono::milliseconds(150)); });
}
