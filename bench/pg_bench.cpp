// stallwatch::pg under pgbench's select-only load (`pgbench -S`): FIBERS
// fibers on one loop, each sending pgbench's query for a random account
// through one pg::Pool of POOL connections, for SECONDS after one second of
// warm-up. bench/pg/run.sh runs it against pgbench on the same server.
//
//   stallwatch-bench-pg FIBERS POOL SECONDS [ACCOUNTS [PREPARE]]
//
// PREPARE: auto (the default ConnectOptions: the query is prepared on each
// connection after 5 runs) or never.
//
// Prints one line: queries, queries per second, latency p50 and p99 (µs),
// the process's CPU time (user + system) per query in the measured window
// (µs: on a shared machine it moves much less than the rate), and every
// query answered, warm-up included (for the server's CPU per query).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "stallwatch/pg.hpp"
#include "stallwatch/stallwatch.hpp"

namespace sw = stallwatch;
namespace pg = stallwatch::pg;
using Clock = std::chrono::steady_clock;

namespace {

double process_cpu_us() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  const auto us = [](const timeval& t) { return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_usec); };
  return us(u.ru_utime) + us(u.ru_stime);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s FIBERS POOL SECONDS [ACCOUNTS [PREPARE]]\n", argv[0]);
    return 2;
  }
  const std::string prepare = argc > 5 ? argv[5] : "auto";
  if (prepare != "auto" && prepare != "never") {
    std::fprintf(stderr, "%s: PREPARE is \"%s\"; accepted: auto, never\n", argv[0], prepare.c_str());
    return 2;
  }
  pg::ConnectOptions options;
  if (prepare == "never") options.prepare_threshold = std::nullopt;
  const int fibers = std::atoi(argv[1]);
  const int pool_size = std::atoi(argv[2]);
  const int seconds = std::atoi(argv[3]);
  const int accounts = argc > 4 ? std::atoi(argv[4]) : 100000;
  return sw::run([&] {
    pg::Pool pool("", pool_size, 64, options);
    std::vector<std::vector<std::uint32_t>> latencies_us(static_cast<std::size_t>(fibers));
    std::size_t answered = 0;
    const Clock::time_point measure_from = Clock::now() + std::chrono::seconds(1);
    const Clock::time_point end = measure_from + std::chrono::seconds(seconds);
    double cpu_from_us = 0, cpu_to_us = 0;
    sw::Task<void> cpu_clock = sw::spawn([&] {
      sw::sleep_until(measure_from);
      cpu_from_us = process_cpu_us();
      sw::sleep_until(end);
      cpu_to_us = process_cpu_us();
    });
    std::vector<sw::Task<void>> tasks;
    for (int f = 0; f < fibers; ++f) {
      tasks.push_back(sw::spawn([&, f] {
        std::minstd_rand rng(static_cast<unsigned>(f) + 1);
        auto& mine = latencies_us[static_cast<std::size_t>(f)];
        for (;;) {
          const Clock::time_point t0 = Clock::now();
          if (t0 >= end) return;
          const int aid = static_cast<int>(rng() % static_cast<unsigned>(accounts)) + 1;
          pool.query("SELECT abalance FROM pgbench_accounts WHERE aid = $1", aid);
          ++answered;
          if (t0 >= measure_from) {
            mine.push_back(static_cast<std::uint32_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count()));
          }
        }
      }));
    }
    for (auto& t : tasks) t.join();
    cpu_clock.join();
    std::vector<std::uint32_t> all;
    for (auto& v : latencies_us) all.insert(all.end(), v.begin(), v.end());
    std::sort(all.begin(), all.end());
    if (all.empty()) return 1;
    const auto at = [&](double q) { return all[std::min(all.size() - 1, static_cast<std::size_t>(q * all.size()))]; };
    std::printf("queries %zu tps %.0f p50_us %u p99_us %u cpu_us %.1f all %zu\n", all.size(),
                static_cast<double>(all.size()) / seconds, at(0.50), at(0.99),
                (cpu_to_us - cpu_from_us) / static_cast<double>(all.size()), answered);
    return 0;
  });
}
