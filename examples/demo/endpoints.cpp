// The demo's endpoints: one cooperative and one uncooperative way each to
// spend time, so the watchdog has something to catch and something to leave
// alone.
#include "endpoints.hpp"

#include <unistd.h>

#include <chrono>
#include <string>

#include <stallwatch/in_process.hpp>
#include <stallwatch/in_thread.hpp>
#include <stallwatch/loop.hpp>

namespace demo {

namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

std::string ms_text(int ms) { return std::to_string(ms) + " ms"; }

}  // namespace

[[gnu::noinline]] std::uint64_t busy_compute(int ms) {
  const auto until = steady_clock::now() + milliseconds(ms);
  std::uint64_t x = 0x9e3779b97f4a7c15u;
  do {
    for (int i = 0; i < 4096; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
    }
  } while (steady_clock::now() < until);
  return x;
}

[[gnu::noinline]] void blocking_sleep(int ms) {
  ::usleep(static_cast<useconds_t>(ms) * 1000);
  asm volatile("" ::: "memory");  // no tail call: keep this frame in the stall report
}

Response run_endpoint(const Route& route) {
  switch (route.endpoint) {
    case Endpoint::hello:
      return {200, "hello"};
    case Endpoint::cpu: {
      const std::uint64_t sum = busy_compute(route.ms);
      return {200, "cpu: busy for " + ms_text(route.ms) + " on the loop (checksum " + std::to_string(sum % 1000) + ")\n"};
    }
    case Endpoint::block:
      blocking_sleep(route.ms);
      return {200, "block: usleep for " + ms_text(route.ms) + " on the loop\n"};
    case Endpoint::sleep:
      stallwatch::sleep_for(milliseconds(route.ms));
      return {200, "sleep: sleep_for " + ms_text(route.ms) + ", loop free meanwhile\n"};
    case Endpoint::offload:
      stallwatch::in_thread(blocking_sleep, route.ms);
      return {200, "offload: usleep for " + ms_text(route.ms) + " on the in_thread pool\n"};
    case Endpoint::process: {
      const std::uint64_t sum = stallwatch::in_process(busy_compute, route.ms);
      return {200, "process: busy for " + ms_text(route.ms) + " in a child process (checksum " +
                       std::to_string(sum % 1000) + ")\n"};
    }
    case Endpoint::method_not_allowed:
      return {405, "method not allowed\n"};
    case Endpoint::bad_request:
      return {400, "bad request: ms must be an integer 0..60000\n"};
    case Endpoint::not_found:
      break;
  }
  return {404, "not found\n"};
}

}  // namespace demo
