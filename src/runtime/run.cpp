// run(): the top layer. It wires a new loop to the parts that watch it, which
// the scheduler itself knows nothing of: the emitter (the loop's sink and
// format), the blocking-call probes (strict mode, STALLWATCH_ALLOW), the
// metrics endpoint and the watchdog. The loop's thread.
#include <sched.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>

#include "blocking/blocking_calls.hpp"
#include "core/loop.hpp"
#include "emit/emitter.hpp"
#include "metrics/endpoint.hpp"
#include "stallwatch/loop.hpp"
#include "watchdog/watchdog.hpp"

namespace stallwatch {
inline namespace v1 {
namespace {

// While a loop runs: its lines routed, the endpoint started (once per
// process), the watchdog watching it. Torn down in the reverse order, each
// part writing what it still holds before the loop's sink may go away.
class LoopWiring {
 public:
  LoopWiring(core::Loop& loop, const Config& config) : record_(loop.record()) {
    emit::attach_loop(record_.index, config);
    try {
      metrics::ensure_endpoint(config);
      watchdog::loop_started(record_, config);
    } catch (...) {
      emit::detach_loop(record_.index);
      throw;
    }
  }
  ~LoopWiring() {
    // The watchdog first: the waits below are stallwatch's, never a stall of
    // the application's.
    watchdog::loop_stopped(record_);
    // Blocking-call reports are symbolized on their own thread: let them
    // reach this loop's sink before run() returns.
    blocking::flush_reports(std::chrono::seconds(5));
    emit::detach_loop(record_.index);
  }
  LoopWiring(const LoopWiring&) = delete;
  LoopWiring& operator=(const LoopWiring&) = delete;

 private:
  core::LoopRecord& record_;
};

// Options::sched_batch: the loop's thread under SCHED_BATCH while the loop
// runs, when it was SCHED_OTHER (a policy the application chose stays).
// Linux applies a policy per thread; the watchdog's thread, started with the
// first loop before this, keeps its own. A refusal (a seccomp filter, say)
// is said in the loop's log; the loop runs as before.
class BatchPolicy {
 public:
  BatchPolicy(bool wanted, int loop) {
    if (!wanted || sched_getscheduler(0) != SCHED_OTHER) return;
    const sched_param none{};
    switched_ = sched_setscheduler(0, SCHED_BATCH, &none) == 0;
    if (!switched_) {
      emit::message(loop, "sched_batch_refused",
                    std::string("STALLWATCH_SCHED_BATCH=1: sched_setscheduler(SCHED_BATCH) failed (") +
                        std::strerror(errno) + "); the loop's thread stays SCHED_OTHER");
    }
  }
  ~BatchPolicy() {
    const sched_param none{};
    if (switched_) sched_setscheduler(0, SCHED_OTHER, &none);
  }
  BatchPolicy(const BatchPolicy&) = delete;
  BatchPolicy& operator=(const BatchPolicy&) = delete;

 private:
  bool switched_ = false;
};

}  // namespace

namespace detail {

void run_main(const Options& options, TaskBase* main) {
  if (core::Loop::current() != nullptr) throw std::logic_error("stallwatch::run: this thread already runs a loop");
  if (core::Loop::forked_copy() != nullptr) core::Loop::throw_in_forked_child("run");
  const Config config = resolve_config(options);
  emit::configure_process(config);
  blocking::configure(config);  // STALLWATCH_ALLOW; strict-mode probes canary
  core::Loop loop(config);
  const LoopWiring wiring(loop, config);
  const BatchPolicy policy(config.sched_batch, loop.record().index);
  loop.start(main, "main");
  loop.run_until_done(main);
}

}  // namespace detail
}  // namespace v1
}  // namespace stallwatch
