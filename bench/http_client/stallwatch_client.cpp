// HTTP client benchmark, stallwatch: one loop, N fibers, each doing
// keep-alive GETs of URL with stallwatch::http::get for SECONDS seconds.
// Prints "requests=R seconds=S rps=X maxrss_kib=M cpu_us_per_request=C"
// (C: the process's user and system time over the requests).
//
//   stallwatch-bench-http-client URL N SECONDS
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <stallwatch/http.hpp>
#include <stallwatch/stallwatch.hpp>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s URL CONCURRENCY SECONDS\n", argv[0]);
    return 2;
  }
  const std::string url = argv[1];
  const int concurrency = std::atoi(argv[2]);
  const auto duration = std::chrono::duration<double>(std::atof(argv[3]));
  std::uint64_t requests = 0;
  std::uint64_t failures = 0;
  double elapsed = 0;
  stallwatch::run([&] {
    const auto start = stallwatch::Clock::now();
    const auto end = start + std::chrono::duration_cast<stallwatch::Clock::duration>(duration);
    std::vector<stallwatch::Task<void>> fibers;
    for (int i = 0; i < concurrency; ++i) {
      fibers.push_back(stallwatch::spawn([&] {
        while (stallwatch::Clock::now() < end) {
          const auto r = stallwatch::http::get(url);
          if (r.status == 200 && r.body.size() == 5) ++requests;
          else ++failures;
        }
      }, "client"));
    }
    for (auto& f : fibers) f.join();
    elapsed = std::chrono::duration<double>(stallwatch::Clock::now() - start).count();
  });
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double cpu = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                     static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  std::printf("requests=%llu failures=%llu seconds=%.3f rps=%.0f maxrss_kib=%ld cpu_us_per_request=%.1f\n",
              static_cast<unsigned long long>(requests), static_cast<unsigned long long>(failures), elapsed,
              static_cast<double>(requests) / elapsed, usage.ru_maxrss, cpu * 1e6 / static_cast<double>(requests));
  return failures == 0 ? 0 : 1;
}
