// The emitter: the one way out for every line stallwatch writes. It owns
//   - the format (text or JSON lines, per loop, from its Options/environment);
//   - the escaping of every field (format.hpp);
//   - the per-loop rate limit of reports, each kind apart, with a
//     "suppressed N" summary written when the window closes, whether or not
//     another report comes (a thread of its own waits for that moment);
//   - the routing: a line goes to the sink of the loop it belongs to, a
//     process-wide line to the process's sink (the first Options::log_sink
//     any loop set, else stderr).
// Sinks are never called by the thread that writes a line: each loop's lines
// (and the process's) queue in order for a thread of their own, so a loop
// thread or the watchdog never waits for a sink, and a slow sink holds up
// only its own loop's lines. At most 1024 wait; the lines dropped beyond are
// counted and said once the sink returns. A sink that throws loses nothing:
// the line goes to stderr instead. Lines still queued at exit() are written
// (for up to 2 s).
//
//   emit::attach_loop(index, config);                  // the loop starts
//   emit::message(index, "fiber_error", "fiber 3 ...", {{"fiber", 3}});
//   if (emit::admit(index, emit::ReportKind::stall)) emit::write(sample);
//   emit::detach_loop(index);                          // the loop ends
//
// Any thread; NOT async-signal-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "emit/events.hpp"
#include "stallwatch/config.hpp"
#include "stallwatch/export.hpp"

namespace stallwatch::emit {

// The process's sink and format: the first loop that sets a sink, and the
// first loop's format, stay the process's.
void configure_process(const Config& config);

// Routes loop `loop`'s lines to config.log_sink (the process's sink when it is
// unset) in config.log_format, with config.reports_per_minute reports of each
// kind per window. The loop thread, as its loop starts.
void attach_loop(int loop, const Config& config);
// Writes the summaries the loop's windows still hold, then forgets the loop:
// its later lines go to the process's sink. Returns once every line of this
// loop has reached its sink. The loop thread, as its loop ends, once nothing
// watches it any more (this waits for the sink).
void detach_loop(int loop);

// Whether a report of `kind` on `loop` may be written now (its rate limit);
// a refused one is counted for the window's "suppressed N" summary.
bool admit(int loop, ReportKind kind);
// How many stall reports of loop's window had this stack, this one included.
int note_stack(int loop, std::uint64_t stack_id);

// Names the culprit of a report (events.hpp: the first application frame)
// by the loop's rules: the defaults and its Options::not_app.
void name_culprit(StallSample& sample);
void name_culprit(BlockingCall& call);

// Formats one line and queues it for the sink of its loop; a report's culprit
// is named first. Returns without waiting for the sink.
void write(StallSample sample);
void write(const StallEnd& end);
void write(BlockingCall call);
void write(const Message& message);
// Shorthand for write(Message{loop, event, text, fields}). Exported for the
// client libraries (libstallwatch-curl's notices); internal.
STALLWATCH_EXPORT void message(int loop, std::string event, std::string text, std::vector<Field> fields = {});

// A line the process may end after (an abort, a refusal at start-up): written
// as message() writes it, then waits (up to 2 s) until every line queued so
// far has reached its sink, so that it is not lost with the process. On a
// loop thread the caller marks the wait as its own (core::OwnWait).
void message_and_flush(int loop, std::string event, std::string text, std::vector<Field> fields = {});

// Strict mode's last word: writes "strict mode: ending the process with
// status 70 after <why>", waits (up to 5 s) for the loop's lines to reach
// its sink, and ends the process with _exit(strict_exit_status).
[[noreturn]] void end_process_strict(int loop, const std::string& why);

// Waits until every line queued so far, on every loop's channel and the
// process's, has reached its sink; false when the timeout passed first.
// Never on a loop thread (it waits for sinks).
bool flush(std::chrono::milliseconds timeout);

// Tests only: the rate-limit window of loops attached from now on (a minute
// otherwise), so that a window's summary can be seen to come on its own.
void set_report_window_for_testing(std::chrono::nanoseconds window);

}  // namespace stallwatch::emit
