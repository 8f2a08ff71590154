// The watchdog's policy: which samples are written (each loop's rate limit,
// kept by the emitter; every sample in strict mode, which then ends the
// process), and their delivery: names from the shared symbolizer, the stall
// profile, the emitter. Delivery runs outside State::mutex, so a slow sink or
// a module's debug info being read never holds up a loop's start or stop.
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

// Delivers batch without s.mutex (lock is released meanwhile, and the
// symbolizer taken after it, never the other way round: a fork takes them in
// that order).
void deliver_batch(State& s, std::unique_lock<std::mutex>& lock, std::deque<Event> batch,
                   std::unique_lock<std::mutex>& symbolizer_lock) {
  s.delivering = true;
  lock.unlock();
  if (!symbolizer_lock.owns_lock()) symbolizer_lock.lock();
  symbolize::Symbolizer& symbolizer = symbolize::shared_symbolizer().get();
  for (Event& e : batch) deliver(s, e, symbolizer);
  symbolizer_lock.unlock();
  lock.lock();
  s.delivering = false;
  s.delivered.notify_all();
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
  if (w.strict) s.strict_due = true;  // the report now, whatever it takes, then the exit
}

void deliver_pending(State& s, std::unique_lock<std::mutex>& lock, bool wait) {
  s.delivered.wait(lock, [&s] { return !s.delivering; });
  if (s.pending.empty()) return;
  symbolize::SharedSymbolizer& shared = symbolize::shared_symbolizer();
  std::unique_lock symbolizer_lock(shared.mutex, std::defer_lock);
  if (!wait && !symbolizer_lock.try_lock()) {
    shared.reports_waiting.store(true);
    return;
  }
  shared.reports_waiting.store(false);
  std::deque<Event> batch = std::move(s.pending);
  s.pending.clear();
  deliver_batch(s, lock, std::move(batch), symbolizer_lock);
}

void deliver_loop_events(State& s, std::unique_lock<std::mutex>& lock, int loop) {
  s.delivered.wait(lock, [&s] { return !s.delivering; });
  std::deque<Event> mine;
  for (auto it = s.pending.begin(); it != s.pending.end();) {
    const int of = it->kind == Event::Kind::end       ? it->end.loop
                   : it->kind == Event::Kind::message ? it->message.loop
                                                      : it->sample.loop;
    if (of == loop) {
      mine.push_back(std::move(*it));
      it = s.pending.erase(it);
    } else {
      ++it;
    }
  }
  if (mine.empty()) return;
  std::unique_lock symbolizer_lock(symbolize::shared_symbolizer().mutex, std::defer_lock);
  deliver_batch(s, lock, std::move(mine), symbolizer_lock);
}

}  // namespace stallwatch::watchdog
