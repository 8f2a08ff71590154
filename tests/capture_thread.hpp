// A plain thread with a watchdog capture slot, for tests that capture its
// stack with the watchdog's own signal handler. Test helper.
#pragma once

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <thread>

#include "watchdog/capture_signal.hpp"

namespace stallwatch_test {

// Runs body on a thread whose capture slot is set; tid is published once
// the thread is ready, and the destructor joins it.
struct CaptureThread {
  stallwatch::watchdog::CaptureSlot slot;
  std::atomic<pid_t> tid{0};
  std::thread thread;

  template <class F>
  explicit CaptureThread(F body) {
    namespace wd = stallwatch::watchdog;
    thread = std::thread([this, body] {
      wd::prime_unwinder();
      wd::tls_capture_slot = &slot;
      tid.store(static_cast<pid_t>(syscall(SYS_gettid)));
      body();
      wd::tls_capture_slot = nullptr;
    });
    while (tid.load() == 0) std::this_thread::yield();
  }
  ~CaptureThread() { thread.join(); }

  // Requests one capture and waits for it (5 s at most).
  bool capture() {
    namespace wd = stallwatch::watchdog;
    const std::uint64_t request = wd::request_capture(slot, tid.load(), wd::default_capture_signal());
    return request != 0 && wd::wait_for_capture(slot, request, 5'000'000'000ull);
  }
};

}  // namespace stallwatch_test
