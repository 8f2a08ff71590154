// stallwatch/testing.hpp — make a doctest test case fail when a loop stalls
// inside it.
//
// Put STALLWATCH_FAIL_ON_STALL() at the top of a test case (or any scope):
// when the scope ends, every stall the watchdog saw meanwhile, on any loop of
// the process, fails the test case with the last stall's report.
//
//   TEST_CASE("the handler never stalls the loop") {
//     STALLWATCH_FAIL_ON_STALL();
//     stallwatch::run([] { handle_request(); });
//   }
//
// A stall counts once the watchdog has sampled it (the slice ran past the
// threshold and was seen by a watchdog tick, within T/8 of the threshold).
// Include doctest before or after this header; the test thread only.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <string>

#include "stallwatch/watchdog.hpp"

namespace stallwatch {
inline namespace v1 {
namespace testing {

class fail_on_stall {
 public:
  fail_on_stall(const char* file, int line) : file_(file), line_(line), start_(stall_count()) {}
  fail_on_stall(const fail_on_stall&) = delete;
  fail_on_stall& operator=(const fail_on_stall&) = delete;

  // Stalls seen since this guard was made.
  std::uint64_t stalls() const { return stall_count() - start_; }

  ~fail_on_stall() {
    const std::uint64_t n = stalls();
    if (n > 0) {
      DOCTEST_ADD_FAIL_CHECK_AT(file_, line_, "stallwatch: " << n << " stall(s) in this scope; the last:\n"
                                                             << last_stall_report());
    }
  }

 private:
  const char* file_;
  int line_;
  std::uint64_t start_;
};

}  // namespace testing
}  // namespace v1
}  // namespace stallwatch

#define STALLWATCH_FAIL_ON_STALL_CAT2(a, b) a##b
#define STALLWATCH_FAIL_ON_STALL_CAT(a, b) STALLWATCH_FAIL_ON_STALL_CAT2(a, b)
#define STALLWATCH_FAIL_ON_STALL() \
  ::stallwatch::testing::fail_on_stall STALLWATCH_FAIL_ON_STALL_CAT(stallwatch_fail_on_stall_, __LINE__)(__FILE__, __LINE__)
