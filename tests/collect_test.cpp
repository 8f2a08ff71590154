// collect (tuple and range forms) and resolve.
#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "stallwatch/collect.hpp"

using namespace std::chrono_literals;
namespace sw = stallwatch;

TEST_CASE("collect runs callables concurrently and returns results in argument order") {
  sw::run([] {
    const auto start = std::chrono::steady_clock::now();
    auto [a, b, c] = sw::collect([] { sw::sleep_for(30ms); return 1; },
                                 [] { sw::sleep_for(30ms); return std::string("two"); },
                                 [] { sw::sleep_for(30ms); });
    CHECK(a == 1);
    CHECK(b == "two");
    CHECK(std::is_same_v<decltype(c), std::monostate>);
    CHECK(std::chrono::steady_clock::now() - start < 85ms * 10);  // concurrent; generous margin
  });
}

TEST_CASE("collect rethrows the first exception in argument order after all finish") {
  sw::run([] {
    bool slow_finished = false;
    CHECK_THROWS_WITH(sw::collect([]() -> int { throw std::runtime_error("first"); },
                                  [&] { sw::sleep_for(10ms); slow_finished = true; return 0; },
                                  []() -> int { throw std::runtime_error("second"); }),
                      "first");
    CHECK(slow_finished);
  });
}

TEST_CASE("collect over a range keeps input order and at most `workers` running") {
  sw::run([] {
    int running = 0, peak = 0;
    std::vector<std::function<int()>> jobs;
    for (int i = 0; i < 20; ++i) {
      jobs.push_back([&, i] {
        peak = std::max(peak, ++running);
        sw::sleep_for(std::chrono::milliseconds(20 - i));
        --running;
        return i * i;
      });
    }
    const std::vector<int> squares = sw::collect(jobs, 4);
    REQUIRE(squares.size() == 20);
    for (int i = 0; i < 20; ++i) CHECK(squares[i] == i * i);
    CHECK(peak == 4);
  });
}

TEST_CASE("resolve hands results out as they complete") {
  sw::run([] {
    std::vector<std::function<int()>> jobs;
    for (int ms : {40, 5, 20}) jobs.push_back([ms] { sw::sleep_for(std::chrono::milliseconds(ms)); return ms; });
    auto done = sw::resolve(jobs, 3);
    std::vector<int> order;
    while (auto v = done->next()) order.push_back(*v);
    CHECK(order == std::vector<int>{5, 20, 40});
  });
}

TEST_CASE("resolve rethrows a failed call's exception from next()") {
  sw::run([] {
    std::vector<std::function<int()>> jobs{[]() -> int { throw std::runtime_error("job failed"); }};
    auto done = sw::resolve(jobs, 1);
    CHECK_THROWS_WITH(done->next(), "job failed");
    CHECK_FALSE(done->next().has_value());
  });
}
