// The stack of a probed blocking call, taken on the loop thread at the call
// (libunwind: program counters only, no names), and what is read from it
// cheaply there: its modules, its call-site key, whether libstallwatch
// itself made the call. Loop thread; NOT async-signal-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace stallwatch::blocking {

struct CallStack {
  static constexpr int max_frames = 32;
  void* pcs[max_frames];
  int size = 0;
};

// The frames from `return_address` (where the entry point called by the
// interposer returns to) outward, minus the interposer's own frame.
CallStack capture_caller_stack(const void* return_address);

// The base address of libstallwatch.so, or null when this code is linked
// into the program itself (the static archive the unit tests use).
const void* libstallwatch_shared_base();

// True when pc (a return address) lies in libstallwatch.so itself: its own
// calls are internal even where no base::InternalBlockingScope marks them.
bool made_by_libstallwatch(const void* pc);

// The file names of the modules holding the frames (dladdr: no debug
// information read), for STALLWATCH_ALLOW's function@module.
std::vector<std::string> stack_modules(const CallStack& stack);

// The key that tells one call site from another: the function and the
// innermost frames (the same call reached from different callers differs).
std::uint64_t call_site_key(std::string_view function, const CallStack& stack);

}  // namespace stallwatch::blocking
