// The process's one Symbolizer, shared by the watchdog's reports and the
// blocking-call reports: debug information is read once per module, and a
// loop that starts and stops often does not reload it. Kept across watchdog
// threads; never destroyed (reports may be written while the process exits).
//
//   auto& shared = symbolize::shared_symbolizer();
//   std::lock_guard lock(shared.mutex);
//   const auto& frames = shared.get().symbolize(pc, true);
//
// Any thread, with `mutex` held for get(). NOT async-signal-safe.
#pragma once

#include <atomic>
#include <mutex>
#include <thread>

#include "symbolize/symbolizer.hpp"

namespace stallwatch::symbolize {

struct SharedSymbolizer {
  std::mutex mutex;
  Symbolizer* symbolizer = nullptr;          // made on first use
  std::atomic<bool> reports_waiting{false};  // a warm-up gives way while set
  std::atomic<bool> cancel_warm_up{false};   // the process exits
  std::thread* warmer = nullptr;             // joined at exit, leaked in a forked child

  // With mutex held.
  Symbolizer& get() {
    if (symbolizer == nullptr) symbolizer = new Symbolizer;
    return *symbolizer;
  }
};

SharedSymbolizer& shared_symbolizer();

// In a forked child whose parent forked while another thread held the
// symbolizer (mid-way through a module's debug info): the child's copy may be
// half-changed and its mutex is held by a thread that does not exist here, so
// the child gets a fresh one and the old one is left untouched. Forking thread only.
void replace_shared_symbolizer_in_child();

}  // namespace stallwatch::symbolize
