// run_loops: n loops on n named threads.
#include <pthread.h>

#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/loop_record.hpp"
#include "emit/emitter.hpp"
#include "stallwatch/loop_handle.hpp"

namespace stallwatch {
inline namespace v1 {
namespace detail {

namespace {

constexpr std::size_t max_loops = 1024;

// A loop's error after another loop's, which run_loops rethrows: logged, on
// the loop's sink while it runs (else the process's), never dropped.
void report_other_error(std::exception_ptr error) noexcept {
  std::string what = "a non-standard exception";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  try {
    const int loop = this_loop_index();
    emit::message(loop >= 0 ? loop : emit::process_wide, "run_loops_error",
                  "run_loops: " + (loop >= 0 ? "loop " + std::to_string(loop) : std::string("a loop")) +
                      " ended with an exception after another loop's, which run_loops rethrows: " + what,
                  {{"what", what}});
  } catch (...) {
    // Out of memory while reporting: nothing more can be said.
  }
}

}  // namespace

void run_loops_with(const Options& options, std::size_t n, const std::function<void(std::size_t)>& body) {
  if (n == 0 || n > max_loops) {
    throw std::invalid_argument("stallwatch::run_loops: " + std::to_string(n) + " loops asked for; accepted: 1 to " +
                                std::to_string(max_loops));
  }
  (void)resolve_config(options);  // a bad option throws here, on the caller's thread, before any loop starts
  // The n loops take n consecutive indices, in order: thread stallwatch-k runs loop k.
  const int first_index = core::reserve_loop_records(static_cast<int>(n));
  std::mutex first_error_mutex;
  std::exception_ptr first_error;
  // Keeps the first error; says every later one (outside the lock: a sink may be slow).
  const auto keep_or_report = [&first_error_mutex, &first_error](std::exception_ptr error) {
    {
      std::lock_guard<std::mutex> lock(first_error_mutex);
      if (!first_error) {
        first_error = std::move(error);
        return;
      }
    }
    report_other_error(std::move(error));
  };
  auto run_one = [&](std::size_t i) {
    const int index = first_index + static_cast<int>(i);
    const std::string name = "stallwatch-" + std::to_string(index);  // 15 characters at most for index < 10000
    pthread_setname_np(pthread_self(), name.c_str());
    core::claim_reserved_next(index);
    try {
      run(options, [&body, &keep_or_report, i] {
        try {
          body(i);
        } catch (...) {
          // Kept, or said on the loop's own sink while it still runs.
          keep_or_report(std::current_exception());
        }
      });
    } catch (...) {
      keep_or_report(std::current_exception());
    }
    core::end_reservation(index);
  };
  std::vector<std::thread> threads;
  threads.reserve(n);
  try {
    for (std::size_t i = 0; i < n; ++i) threads.emplace_back(run_one, i);
  } catch (...) {
    for (std::size_t i = threads.size(); i < n; ++i) core::cancel_reservation(first_index + static_cast<int>(i));
    for (std::thread& t : threads) t.join();  // those started run to their end
    throw;
  }
  for (std::thread& t : threads) t.join();
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace detail
}  // namespace v1
}  // namespace stallwatch
