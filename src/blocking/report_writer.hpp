// Blocking-call reports are symbolized and written on a thread of their own,
// so a loop never reads debug information (which can take far longer than
// the call being reported). The thread starts with the first report; it is a
// plain thread, so its own calls are never flagged. A forked child starts its
// own (its parent's did not survive the fork).
#pragma once

#include <chrono>
#include <string>

#include "blocking/call_stack.hpp"
#include "emit/events.hpp"

namespace stallwatch::blocking {

// A report waiting for names: the frames are filled in from `stack`.
struct PendingReport {
  emit::BlockingCall call;
  CallStack stack;
};

// Queues a report; returns at once. Any thread (a loop thread in practice).
void submit_report(PendingReport report);

// Waits until every report queued so far is written; false when the timeout
// passed first. Any thread but the writer's.
bool flush_reports(std::chrono::milliseconds timeout);

// The writer of a forked child is its own: forget the parent's. Fork child.
void forget_report_writer_after_fork() noexcept;

}  // namespace stallwatch::blocking
