// run_loops: n loops on n named threads.
#include <pthread.h>

#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "stallwatch/loop_handle.hpp"

namespace stallwatch {
inline namespace v1 {
namespace detail {

namespace {

constexpr std::size_t max_loops = 1024;

}  // namespace

void run_loops_with(const Options& options, std::size_t n, const std::function<void(std::size_t)>& body) {
  if (n == 0 || n > max_loops) {
    throw std::invalid_argument("stallwatch::run_loops: " + std::to_string(n) + " loops asked for; accepted: 1 to " +
                                std::to_string(max_loops));
  }
  (void)resolve_config(options);  // a bad option throws here, on the caller's thread, before any loop starts
  std::mutex first_error_mutex;
  std::exception_ptr first_error;
  std::vector<std::thread> threads;
  threads.reserve(n);
  auto run_one = [&](std::size_t i) {
    const std::string name = "stallwatch-" + std::to_string(i);  // 15 characters at most for i < 10000
    pthread_setname_np(pthread_self(), name.c_str());
    try {
      run(options, [&body, i] { body(i); });
    } catch (...) {
      std::lock_guard<std::mutex> lock(first_error_mutex);
      if (!first_error) first_error = std::current_exception();
    }
  };
  try {
    for (std::size_t i = 0; i < n; ++i) threads.emplace_back(run_one, i);
  } catch (...) {
    for (std::thread& t : threads) t.join();  // those started run to their end
    throw;
  }
  for (std::thread& t : threads) t.join();
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace detail
}  // namespace v1
}  // namespace stallwatch
