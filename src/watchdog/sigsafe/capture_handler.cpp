// MAY RUN IN A SIGNAL HANDLER: no malloc, locks or exceptions in this file.
//
// The stack-capture handler. It runs on the stalled loop thread, unwinds the
// interrupted context with libunwind's local unwinder (async-signal-safe for
// local unwinding once primed, see capture_signal.cpp) into the preallocated
// slot, and publishes it with one atomic store. Names are resolved later, on
// the watchdog thread.
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <cerrno>
#include <cstring>
#include <exception>

#include "base/coarse_clock.hpp"
#include "base/thread_state.hpp"
#include "watchdog/sigsafe/capture_slot.hpp"

namespace stallwatch::watchdog {

constinit thread_local CaptureSlot* tls_capture_slot __attribute__((tls_model("initial-exec"))) = nullptr;

namespace {

// Copies the running fiber's identity from the thread state. Async-signal-safe.
void copy_fiber_identity(CaptureSlot& slot) {
  const base::FiberIdentity* fiber = base::tls_thread_state.fiber;
  slot.fiber_id = fiber != nullptr ? fiber->id : 0;
  std::size_t n = fiber != nullptr && fiber->name != nullptr ? fiber->name_len : 0;
  if (n > CaptureSlot::max_name) n = CaptureSlot::max_name;
  if (n > 0) std::memcpy(slot.fiber_name, fiber->name, n);
  slot.fiber_name_len = n;
}

// Unwinds the interrupted context into slot.pcs. The first frame is the
// interrupted instruction itself (UNW_INIT_SIGNAL_FRAME); the others are
// return addresses. Async-signal-safe.
void unwind_into(CaptureSlot& slot, void* ucontext) {
  unw_cursor_t cursor;
  if (unw_init_local2(&cursor, static_cast<unw_context_t*>(ucontext), UNW_INIT_SIGNAL_FRAME) < 0) {
    slot.outcome = CaptureOutcome::unwind_failed;
    slot.depth = 0;
    return;
  }
  int depth = 0;
  do {
    unw_word_t ip = 0;
    if (unw_get_reg(&cursor, UNW_REG_IP, &ip) < 0 || ip == 0) break;
    slot.pcs[depth++] = static_cast<std::uintptr_t>(ip);
  } while (depth < CaptureSlot::max_frames && unw_step(&cursor) > 0);
  slot.depth = depth;
  slot.outcome = CaptureOutcome::captured;
}

}  // namespace

// Async-signal-safe.
void capture_signal_handler(int /*signo*/, siginfo_t* /*info*/, void* ucontext) {
  const int saved_errno = errno;
  CaptureSlot* slot = tls_capture_slot;
  if (slot != nullptr) {
    const std::uint64_t request = slot->requested.load(std::memory_order_acquire);
    if (request != slot->published.load(std::memory_order_relaxed)) {
      copy_fiber_identity(*slot);
      slot->slice_seq = slot->slice_counter != nullptr ? slot->slice_counter->load(std::memory_order_relaxed) : 0;
      if (base::tls_thread_state.in_switch != 0) {
        // Registers and stack pointer disagree halfway through a switch.
        slot->outcome = CaptureOutcome::in_switch;
        slot->depth = 0;
      } else if (std::uncaught_exceptions() > 0) {
        // A throw is in flight: the thread may be inside libgcc's unwinder,
        // which holds its frame-registry lock and walks dl_iterate_phdr.
        // libunwind would re-enter the same loader paths from the handler,
        // which are not async-signal-safe, and the stack is half torn down.
        // (std::uncaught_exceptions reads libstdc++'s per-thread globals:
        // static TLS of a library loaded at start-up, no allocation.)
        slot->outcome = CaptureOutcome::exception;
        slot->depth = 0;
      } else {
        unwind_into(*slot, ucontext);
      }
      slot->published_ns = base::monotonic_ns();
      slot->published.store(request, std::memory_order_release);
    }
  }
  errno = saved_errno;
}

}  // namespace stallwatch::watchdog
