// The stack of a loop thread stalled in a wait that it published
// (core::WaitContext, from the interposers of core/wait_interpose.cpp),
// unwound on the watchdog thread so that no signal ends the wait early.
//
//   PublishedWaitStack stack;
//   if (unwind_published_wait(*record, stalled_slice, stack)) report(stack.pcs);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/loop_record.hpp"

namespace stallwatch::watchdog {

struct PublishedWaitStack {
  std::uint64_t fiber_id = 0;
  std::string fiber_name;
  // Return addresses, innermost first: pcs[0] returns into the code that
  // called the wait (the interposers, stallwatch's and libstallwatch-probes',
  // and a sanitizer's interceptor, are left out).
  std::vector<std::uintptr_t> pcs;
};

// Unwinds the wait that `record`'s loop thread published, when it began in
// slice `slice_seq`. The loop thread stays in its wait meanwhile (if the wait
// returns, the thread waits for the unwind to end). False when the thread is
// in no published wait of that slice. Watchdog thread; NOT async-signal-safe.
bool unwind_published_wait(core::LoopRecord& record, std::uint64_t slice_seq, PublishedWaitStack& out);

}  // namespace stallwatch::watchdog
