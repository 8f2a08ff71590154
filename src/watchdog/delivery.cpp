// The watchdog's policy: which samples are written (each loop's rate limit,
// kept by the emitter; every sample in strict mode, which then ends the
// process), and their delivery: names from the shared symbolizer, the stall
// profile, the emitter. Delivery runs on a thread of its own, outside
// State::mutex, so a module's debug info being read never holds up a check of
// the loops, nor a loop's start or stop (and the emitter never waits for a
// sink).
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "emit/emitter.hpp"
#include "emit/format.hpp"
#include "symbolize/shared_symbolizer.hpp"
#include "watchdog/stall_profile.hpp"
#include "watchdog/state.hpp"

namespace stallwatch::watchdog {
namespace {

// Names, profiles and writes one event. Without State::mutex; with the
// symbolizer held.
void deliver(State& s, Event& e, symbolize::Symbolizer& symbolizer) {
  if (e.kind == Event::Kind::message) {
    emit::write(e.message);
    return;
  }
  std::vector<symbolize::Frame> frames;
  for (std::size_t i = 0; i < e.stack.pcs.size(); ++i) {
    const auto& at_pc = symbolizer.symbolize(e.stack.pcs[i], i > 0 || e.stack.all_return_addresses);
    frames.insert(frames.end(), at_pc.begin(), at_pc.end());
  }
  std::vector<std::string> names;
  for (const symbolize::Frame& f : frames) names.push_back(f.short_name());
  if (names.empty() && !e.stack.missing.empty()) names.push_back(e.stack.missing);
  profile_add(names, e.profile_ns);

  if (e.kind == Event::Kind::end) {
    if (e.write) emit::write(e.end);
    return;
  }
  e.sample.frames = std::move(frames);
  {
    // The whole report, frames included even when the log shows a repeat.
    emit::StallSample full = e.sample;
    full.seen = 1;
    emit::name_culprit(full);
    const std::string text = emit::format(full, log_format::text);
    std::lock_guard lock(s.last_report_mutex);
    s.last_report = text;
  }
  if (!e.write) return;
  const int loop = e.sample.loop;
  const std::uint64_t wall_ns = e.sample.wall_ns;
  emit::write(std::move(e.sample));
  if (e.strict) {
    emit::end_process_strict(loop, "a stall of " + emit::format_ms(wall_ns) + " on loop " + std::to_string(loop));
  }
}

}  // namespace

void queue_sample(State& s, WatchedLoop& w, Event&& e) {
  Stall& st = w.stall;
  emit::StallSample& sample = e.sample;
  st.last_stack = e.stack;

  e.write = w.strict || emit::admit(sample.loop, emit::ReportKind::stall);
  e.strict = w.strict;
  if (e.write) {
    if (sample.stack_id != 0) sample.seen = emit::note_stack(sample.loop, sample.stack_id);
    w.record->stalls.reports.add();
    ++st.reported;
  } else {
    w.record->stalls.reports_suppressed.add();
  }
  s.pending.push_back(std::move(e));
}

namespace {

int loop_of(const Event& e) {
  switch (e.kind) {
    case Event::Kind::end:
      return e.end.loop;
    case Event::Kind::message:
      return e.message.loop;
    case Event::Kind::sample:
      break;
  }
  return e.sample.loop;
}

}  // namespace

void run_delivery() {
  State& s = state();
  symbolize::SharedSymbolizer& shared = symbolize::shared_symbolizer();
  std::unique_lock lock(s.mutex);
  for (;;) {
    s.to_deliver.wait(lock, [&s] { return s.stop_delivery || !s.pending.empty(); });
    if (s.pending.empty()) return;  // stopped, and everything delivered
    std::deque<Event> batch = std::move(s.pending);
    s.pending.clear();
    s.delivering = true;
    lock.unlock();
    {
      // The symbolizer after s.mutex, never the other way round: a fork takes
      // them in that order. Reports first: the warm-up yields to them.
      std::unique_lock symbolizer_lock(shared.mutex, std::try_to_lock);
      if (!symbolizer_lock.owns_lock()) {
        shared.reports_waiting.store(true);
        symbolizer_lock.lock();
        shared.reports_waiting.store(false);
      }
      for (Event& e : batch) deliver(s, e, shared.get());
    }
    lock.lock();
    s.delivering = false;
    s.delivered.notify_all();
  }
}

void wait_delivered(State& s, std::unique_lock<std::mutex>& lock, int loop) {
  s.to_deliver.notify_all();
  s.delivered.wait(lock, [&] {
    return s.delivery == nullptr ||
           (!s.delivering && std::none_of(s.pending.begin(), s.pending.end(),
                                          [loop](const Event& e) { return loop_of(e) == loop; }));
  });
}

}  // namespace stallwatch::watchdog
