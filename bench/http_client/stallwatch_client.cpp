// HTTP client benchmark, stallwatch: one loop, N fibers, each doing
// keep-alive GETs of URL for a warm-up second and then SECONDS seconds, with
// stallwatch::http::get, or (API perform) with curl::perform of an easy
// handle each fiber configured once, as the plain curl-multi program does:
// the http layer's cost apart from the loop integration's. Prints
// "requests=R seconds=S rps=X maxrss_kib=M cpu_us_per_request=C" for the
// SECONDS after the warm-up (C: the process's user and system time over the
// requests; start-up, such as the symbolizer's warm-up thread, is left out).
//
//   stallwatch-bench-http-client URL N SECONDS [http|perform]
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <stallwatch/curl.hpp>
#include <stallwatch/http.hpp>
#include <stallwatch/stallwatch.hpp>

namespace {

double process_cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string api = argc == 5 ? argv[4] : "http";
  if ((argc != 4 && argc != 5) || (api != "http" && api != "perform")) {
    std::fprintf(stderr, "usage: %s URL CONCURRENCY SECONDS [http|perform]\n", argv[0]);
    return 2;
  }
  const std::string url = argv[1];
  const int concurrency = std::atoi(argv[2]);
  const auto duration = std::chrono::duration<double>(std::atof(argv[3]));
  std::uint64_t requests = 0;
  std::uint64_t failures = 0;
  // At the end of the warm-up: the time, requests and CPU so far.
  bool measuring = false;
  stallwatch::Clock::time_point measured_from;
  std::uint64_t requests_before = 0;
  double cpu_before = 0;
  double elapsed = 0;
  double cpu = 0;
  curl_global_init(CURL_GLOBAL_DEFAULT);  // as curl.hpp asks of a program using curl::perform
  stallwatch::run([&] {
    const auto warm = stallwatch::Clock::now() + std::chrono::seconds(1);
    const auto end = warm + std::chrono::duration_cast<stallwatch::Clock::duration>(duration);
    // Each fiber calls this before a request: true until the end.
    auto go_on = [&] {
      const auto now = stallwatch::Clock::now();
      if (!measuring && now >= warm) {
        measuring = true;
        measured_from = now;
        requests_before = requests;
        cpu_before = process_cpu_seconds();
      }
      return now < end;
    };
    std::vector<stallwatch::Task<void>> fibers;
    for (int i = 0; i < concurrency; ++i) {
      fibers.push_back(stallwatch::spawn([&] {
        if (api == "http") {
          while (go_on()) {
            const auto r = stallwatch::http::get(url);
            if (r.status == 200 && r.body.size() == 5) ++requests;
            else ++failures;
          }
          return;
        }
        CURL* easy = curl_easy_init();
        std::size_t body = 0;
        curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, +[](char*, std::size_t size, std::size_t n, void* user) {
          *static_cast<std::size_t*>(user) += size * n;
          return size * n;
        });
        curl_easy_setopt(easy, CURLOPT_WRITEDATA, &body);
        while (go_on()) {
          body = 0;
          long status = 0;
          const CURLcode rc = stallwatch::curl::perform(easy);
          curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
          if (rc == CURLE_OK && status == 200 && body == 5) ++requests;
          else ++failures;
        }
        curl_easy_cleanup(easy);
      }, "client"));
    }
    for (auto& f : fibers) f.join();
    elapsed = std::chrono::duration<double>(stallwatch::Clock::now() - measured_from).count();
    cpu = process_cpu_seconds() - cpu_before;
  });
  const auto counted = static_cast<double>(requests - requests_before);
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf("requests=%.0f failures=%llu seconds=%.3f rps=%.0f maxrss_kib=%ld cpu_us_per_request=%.1f\n", counted,
              static_cast<unsigned long long>(failures), elapsed, counted / elapsed, usage.ru_maxrss,
              cpu * 1e6 / counted);
  return failures == 0 ? 0 : 1;
}
