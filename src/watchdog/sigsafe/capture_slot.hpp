// MAY RUN IN A SIGNAL HANDLER: no malloc, locks or exceptions in this file.
//
// The per-loop capture slot: the watchdog requests a stack by bumping
// `requested` and signalling the loop thread; the handler fills the slot on
// that thread and publishes it with one release store of `published`.
#pragma once

#include <atomic>
#include <csignal>
#include <cstddef>
#include <cstdint>

namespace stallwatch::watchdog {

enum class CaptureOutcome : int {
  captured = 0,         // pcs[0 .. depth) hold the stack
  in_switch = 1,        // a context switch was half done: not unwound
  exception = 2,        // an exception was unwinding: not unwound
  unwind_failed = 3,    // libunwind could not start
};

struct CaptureSlot {
  static constexpr int max_frames = 64;
  static constexpr std::size_t max_name = 64;

  // Written by the watchdog (then it signals); read by the handler.
  std::atomic<std::uint64_t> requested{0};
  std::atomic<std::uint64_t> request_sent_ns{0};
  // Written by the handler last, with release order: the fields below are
  // complete once it equals `requested`.
  std::atomic<std::uint64_t> published{0};

  CaptureOutcome outcome = CaptureOutcome::captured;
  int depth = 0;
  std::uint64_t fiber_id = 0;
  std::size_t fiber_name_len = 0;
  char fiber_name[max_name] = {};
  std::uint64_t slice_seq = 0;     // the loop's slice counter as the handler saw it
  std::uint64_t published_ns = 0;  // CLOCK_MONOTONIC when the stack was complete
  std::uintptr_t pcs[max_frames] = {};
  // The LoopRecord slice counter to copy into slice_seq (null on a thread
  // that runs no loop, e.g. in unit tests).
  const std::atomic<std::uint64_t>* slice_counter = nullptr;
};

// The slot of the loop running on this thread, or null. initial-exec TLS so the
// handler reads it without allocating.
extern constinit thread_local CaptureSlot* tls_capture_slot __attribute__((tls_model("initial-exec")));

// The capture signal's handler (SA_SIGINFO). If this thread has a slot with an
// unanswered request, unwinds the interrupted context into it and publishes.
// Async-signal-safe.
void capture_signal_handler(int signo, siginfo_t* info, void* ucontext);

}  // namespace stallwatch::watchdog
