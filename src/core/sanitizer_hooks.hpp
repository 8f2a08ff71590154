// Tells AddressSanitizer and ThreadSanitizer about fiber switches, so they
// follow execution onto fiber stacks. Compiles to nothing in a plain build;
// this is the one place that chooses.
#pragma once

#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

namespace stallwatch::core {

struct SanitizerFiberState {
  void* asan_fake_stack = nullptr;
  const void* stack_bottom = nullptr;  // lowest address, as ASan wants it
  std::size_t stack_size = 0;
  void* tsan_fiber = nullptr;
};

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool sanitizer_hooks_enabled = true;
#else
inline constexpr bool sanitizer_hooks_enabled = false;
#endif

// Called in the fiber that is about to jump to `to`; from_dying: its stack is
// about to be released.
inline void sanitizer_start_switch([[maybe_unused]] SanitizerFiberState& from,
                                   [[maybe_unused]] SanitizerFiberState& to,
                                   [[maybe_unused]] bool from_dying) {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_start_switch_fiber(from_dying ? nullptr : &from.asan_fake_stack, to.stack_bottom, to.stack_size);
#endif
#if defined(__SANITIZE_THREAD__)
  __tsan_switch_to_fiber(to.tsan_fiber, 0);
#endif
}

// Called first thing in the fiber that was jumped to; records the stack we
// came from when it was not known yet (the thread's own stack).
inline void sanitizer_finish_switch([[maybe_unused]] SanitizerFiberState& self,
                                    [[maybe_unused]] SanitizerFiberState* from) {
#if defined(__SANITIZE_ADDRESS__)
  const void* bottom = nullptr;
  std::size_t size = 0;
  __sanitizer_finish_switch_fiber(self.asan_fake_stack, &bottom, &size);
  if (from != nullptr && from->stack_bottom == nullptr) {
    from->stack_bottom = bottom;
    from->stack_size = size;
  }
#endif
}

inline void sanitizer_fiber_created([[maybe_unused]] SanitizerFiberState& state) {
#if defined(__SANITIZE_THREAD__)
  state.tsan_fiber = __tsan_create_fiber(0);
#endif
}

inline void sanitizer_fiber_destroyed([[maybe_unused]] SanitizerFiberState& state) {
#if defined(__SANITIZE_THREAD__)
  if (state.tsan_fiber != nullptr) __tsan_destroy_fiber(state.tsan_fiber);
#endif
}

// The thread's own context (the scheduler) as a fiber.
inline void sanitizer_adopt_thread([[maybe_unused]] SanitizerFiberState& state) {
#if defined(__SANITIZE_THREAD__)
  state.tsan_fiber = __tsan_get_current_fiber();
#endif
}

}  // namespace stallwatch::core

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace stallwatch::core {

// A stack handed out again may still carry the poison of its last fiber's frames.
inline void sanitizer_stack_reused([[maybe_unused]] void* lo, [[maybe_unused]] std::size_t size) {
#if defined(__SANITIZE_ADDRESS__)
  __asan_unpoison_memory_region(lo, size);
#endif
}

}  // namespace stallwatch::core
