#include "core/loop.hpp"

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#include "base/coarse_clock.hpp"
#include "base/text.hpp"
#include "base/thread_state.hpp"
#include "base/tracepoint.hpp"
#include "core/context_switch.hpp"
#include "core/parking.hpp"
#include "emit/emitter.hpp"
#include "stallwatch/detail/loop_owner.hpp"
#include "stallwatch/errors.hpp"

namespace stallwatch::core {

namespace bctx = boost::context::detail;


constinit thread_local Loop* Loop::tls_loop __attribute__((tls_model("initial-exec"))) = nullptr;
constinit thread_local Loop* Loop::tls_forked_loop __attribute__((tls_model("initial-exec"))) = nullptr;

}  // namespace stallwatch::core

// The loop-bound primitives' owner identity: the loop's record, which is
// never freed (records are reused by later loops, whose primitives are new).
constinit thread_local const void* stallwatch::detail::tls_current_loop
    __attribute__((tls_model("initial-exec"))) = nullptr;

namespace stallwatch::core {

namespace {

// Switches go straight from fiber to fiber at most this many times before the
// scheduler takes a pass (timers, I/O, remote wake-ups); a coarse clock tick
// also ends the run, so timers are never late by more than one tick.
constexpr int direct_switch_budget = 64;

// While fibers keep the loop busy, descriptors are polled at least this often.
constexpr std::uint64_t busy_io_poll_interval_ns = 200'000;

// Stacks readied or trimmed per idle moment (one mprotect and one madvise
// each at most): well under a millisecond, so a connection arriving meanwhile
// waits no longer than that.
constexpr std::size_t stack_upkeep_step = 64;

// How much of a woken fiber's parked stack is fetched ahead of its turn
// (prefetch_after): a connection parked in a read has about 1.1 KiB of frames
// above its saved stack pointer, and its next request writes a few lines
// below it. A fiber parked deeper is left to the CPU.
constexpr std::uintptr_t prefetch_stack_bytes = 2048;
constexpr std::uintptr_t prefetch_below_bytes = 256;

}  // namespace

Loop::ThreadBinding::ThreadBinding(Loop* loop) {
  if (tls_loop != nullptr) throw std::logic_error("stallwatch::run: this thread already runs a loop");
  tls_loop = loop;
  detail::tls_current_loop = &loop->record_;
}

Loop::ThreadBinding::~ThreadBinding() {
  base::tls_thread_state = base::ThreadState{};
  tls_loop = nullptr;
  detail::tls_current_loop = nullptr;
}

Loop::Loop(const Config& config)
    : config_(config),
      record_(claim_loop_record()),
      stacks_(config.stack_kb * 1024),
      binding_(this) {
  record_.tid.store(static_cast<pid_t>(syscall(SYS_gettid)), std::memory_order_relaxed);
  record_.thread = pthread_self();
  record_.threshold_ns.store(static_cast<std::uint64_t>(std::chrono::nanoseconds(config.threshold).count()),
                             std::memory_order_relaxed);
  // A reused record carries on from the last loop's count: counters only go up.
  slice_seq_ = record_.slice.seq.load(std::memory_order_relaxed);
  sanitizer_adopt_thread(scheduler_.sanitizer);
  scheduler_.loop = this;
  scheduler_.name = "scheduler";
  scheduler_.identity.name = scheduler_.name.data();
  scheduler_.identity.name_len = scheduler_.name.size();
  base::tls_thread_state.fiber = &scheduler_.identity;

  // The loop's own work until the first switch is its first slice. A reused
  // record still points at the last loop's fiber (perhaps on this thread's
  // stack, where this loop now is): the watchdog reads it once this loop is
  // watched, so it points at this loop's scheduler first.
  slice_start_ns_ = base::refresh_now();
  record_.slice.fiber_id.store(0, std::memory_order_relaxed);
  record_.slice.fiber.store(&scheduler_.identity, std::memory_order_release);
  record_.slice.start_ns.store(slice_start_ns_, std::memory_order_relaxed);
  record_.slice.seq.store(++slice_seq_, std::memory_order_release);
  record_.slice.idle.store(false, std::memory_order_release);
  stack::install_overflow_handler_for_thread();
  static const bool fork_guarded = ::pthread_atfork(nullptr, nullptr, &Loop::forget_in_forked_child) == 0;
  (void)fork_guarded;
}

Loop::~Loop() {
  refuse_queued_posts();
  stack::remove_overflow_handler_for_thread();
  end_slice(base::refresh_now());
  record_.slice.idle.store(true, std::memory_order_relaxed);
  publish_gauges();
  release_loop_record(record_);
}

// A detached fiber's exception that no join will see: said in the log.
void Loop::report_lost_exception(const Fiber& fiber, const std::string& what) noexcept {
  try {
    emit::message(record_.index, "fiber_exception",
                  "fiber " + std::to_string(fiber.identity.id) + " " + base::quoted(fiber.name) +
                      " ended with an exception nobody will join: " + what,
                  {{"fiber", static_cast<std::int64_t>(fiber.identity.id)}, {"fiber_name", fiber.name},
                   {"what", what}});
  } catch (...) {
    // Out of memory while reporting: nothing more can be said.
  }
}

// ---- a raw fork() on a fiber ----
// The child is a copy of the whole loop: the parent's fibers, its epoll set
// (shared with the parent: the child would take the parent's I/O events) and
// its eventfd. Nothing of it may run there.

void Loop::forget_in_forked_child() noexcept {
  if (tls_loop == nullptr) return;
  tls_forked_loop = tls_loop;
  tls_loop = nullptr;
  detail::tls_current_loop = nullptr;
  base::tls_thread_state = base::ThreadState{};
}

namespace {

std::string forked_child_advice(int loop_index) {
  return "this process is a child made by fork() on a fiber of loop " + std::to_string(loop_index) +
         ", and the child's copy of that loop cannot run (it shares the parent's epoll and descriptors); run "
         "work in a child process with stallwatch::in_process, or a program with stallwatch::run_process";
}

}  // namespace

void Loop::throw_in_forked_child(const char* what) {
  throw not_on_loop(std::string("stallwatch: ") + what + ": " + forked_child_advice(tls_forked_loop->record_.index));
}

void Loop::end_forked_child(const Fiber& fiber) noexcept {
  // No emitter here: after fork() only this thread exists, and another
  // thread of the parent may have held the emitter's lock.
  std::string line = "stallwatch: fiber " + std::to_string(fiber.identity.id) + " " + base::quoted(fiber.name, 64) +
                     " returned in the child it forked; " + forked_child_advice(record_.index) +
                     ". The child ends here with status 70.\n";
  for (std::size_t done = 0; done < line.size();) {
    const ssize_t n = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  ::_exit(70);
}

// Out of line so the hot path of require() needs no stack frame.
void Loop::throw_not_on_loop(const char* what) {
  if (tls_forked_loop != nullptr) throw_in_forked_child(what);
  throw not_on_loop(std::string("stallwatch: ") + what + " called outside a fiber of a running loop");
}

// ---- fibers: birth and death ----

void Loop::start(detail::TaskBase* task, std::string_view name) {
  const stack::Stack stack = stacks_.acquire();
  sanitizer_stack_reused(stack.lo, stack.size);
  // The control block sits at the top of the stack; the fiber's frames start below it.
  auto top = reinterpret_cast<std::uintptr_t>(stack.lo) + stack.size;
  const std::uintptr_t block = (top - sizeof(Fiber)) & ~std::uintptr_t{63};
  Fiber* fiber = new (reinterpret_cast<void*>(block)) Fiber();
  fiber->loop = this;
  fiber->task = task;
  fiber->name.assign(name.empty() ? "fiber" : base::cut_fiber_name(name));
  fiber->identity = base::FiberIdentity{next_fiber_id_++, fiber->name.data(), fiber->name.size(),
                                  reinterpret_cast<std::uintptr_t>(stack.lo),
                                  reinterpret_cast<std::uintptr_t>(stack.lo) + stack.size};
  fiber->stack = stack;
  fiber->io.owner = fiber;
  if (const std::uint64_t* below = stack::canary_below(stack)) fiber->stack_canary = below;
  fiber->sanitizer.stack_bottom = stack.lo;
  fiber->sanitizer.stack_size = stack.size;
  fiber->started = false;
  sanitizer_fiber_created(fiber->sanitizer);
  const std::size_t usable = block - reinterpret_cast<std::uintptr_t>(stack.lo);
  fiber->context = bctx::make_fcontext(reinterpret_cast<void*>(block), usable, &Loop::fiber_entry);

  task->add_ref();
  task->fiber = fiber;
  task->id = fiber->identity.id;

  fiber->all_next = all_fibers_;
  if (all_fibers_ != nullptr) all_fibers_->all_prev = fiber;
  all_fibers_ = fiber;
  ++alive_;
  record_.stats.fibers_spawned.add();
  record_.stats.fibers_alive.store(alive_, std::memory_order_relaxed);
  STALLWATCH_TRACE2(fiber_spawn, record_.index, fiber->identity.id);
  push_ready(fiber);  // a new fiber has no timer to remove and no lag to measure
}

void Loop::fiber_entry(bctx::transfer_t from) noexcept {
  Loop* loop = tls_loop;
  Fiber* self = loop->running_;
  self->started = true;
  auto* previous = static_cast<Fiber*>(from.data);
  if (previous != nullptr) previous->context = from.fctx;
  sanitizer_finish_switch(self->sanitizer, previous != nullptr ? &previous->sanitizer : nullptr);
  if (Fiber* dead = std::exchange(loop->dead_fiber_, nullptr)) release_dead_fiber({nullptr, dead});
  base::tls_thread_state.in_switch = 0;
  self->task->invoke();
  loop->finish_fiber(self);
}

void Loop::finish_fiber(Fiber* self) noexcept {
  if (tls_loop != this) [[unlikely]] end_forked_child(*self);  // only in a child forked by a fiber
  detail::TaskBase* task = self->task;
  task->done = true;
  task->fiber = nullptr;
  wake_all(task->joiners);
  if (task->error && task->refs() == 1) {
    try {
      std::rethrow_exception(task->error);
    } catch (const cancelled&) {
      // A detached fiber cancelled on purpose (e.g. as run() drains): expected.
    } catch (const std::exception& e) {
      report_lost_exception(*self, e.what());
    } catch (...) {
      report_lost_exception(*self, "a non-standard exception");
    }
    task->error_observed = true;
  }
  task->release();

  if (self->all_prev != nullptr) self->all_prev->all_next = self->all_next;
  else all_fibers_ = self->all_next;
  if (self->all_next != nullptr) self->all_next->all_prev = self->all_prev;
  --alive_;
  record_.stats.fibers_alive.store(alive_, std::memory_order_relaxed);
  STALLWATCH_TRACE2(fiber_exit, record_.index, self->identity.id);

  const std::uint64_t now = base::coarse_now();
  Fiber* next = pick_next(now);
  enter_switch(self, next, now, true);
  // This stack is released from the next fiber's stack, once we are off it:
  // on top of its context if it has run before, else by its entry function
  // (a fresh context's trampoline does not pass an on-top result through).
  if (next->started) {
    bctx::ontop_fcontext(next->context, self, &Loop::release_dead_fiber);
  } else {
    dead_fiber_ = self;
    bctx::jump_fcontext(next->context, nullptr);
  }
  __builtin_unreachable();
}

bctx::transfer_t Loop::release_dead_fiber(bctx::transfer_t from) noexcept {
  auto* dead = static_cast<Fiber*>(from.data);
  Loop* loop = dead->loop;
  const stack::Stack stack = dead->stack;
  sanitizer_fiber_destroyed(dead->sanitizer);
  dead->~Fiber();
  loop->stacks_.release(stack);
  return bctx::transfer_t{nullptr, nullptr};
}

// ---- switching ----

// These four are inlined into the switch: its fast path makes no call but the jump.
[[gnu::always_inline]] inline void Loop::end_slice(std::uint64_t now) noexcept {
  // A scrape that sees this slice recorded also sees it counted
  // (slice_duration_buckets). No instruction on x86.
  std::atomic_thread_fence(std::memory_order_release);
  if (now > slice_start_ns_) record_.stats.slice_duration.record(now - slice_start_ns_);
  slice_start_ns_ = now;
  record_.slice.start_ns.store(now, std::memory_order_relaxed);
}

[[gnu::always_inline]] inline void Loop::record_lag(Fiber* next, std::uint64_t now) noexcept {
  record_.stats.loop_lag.record(now > next->ready_since_ns ? now - next->ready_since_ns : 0);
  next->ready_since_ns = 0;
}

[[gnu::always_inline]] inline void Loop::begin_slice(Fiber* next, std::uint64_t now) noexcept {
  LoopRecord& record = record_;  // one load: the stores below could alias it
  // Within one coarse tick the slice is shorter than the first bucket: it is
  // counted as finished-slices minus the other buckets, so nothing is written.
  if (now != slice_start_ns_) [[unlikely]] end_slice(now);
  record.slice.fiber_id.store(next->identity.id, std::memory_order_relaxed);
  // Release (a plain store on x86): the watchdog reads the identity it points
  // to, which may belong to a loop that reuses the record since the seq it saw.
  record.slice.fiber.store(&next->identity, std::memory_order_release);
  record.slice.seq.store(++slice_seq_, std::memory_order_release);
  if (next->ready_since_ns != 0) record_lag(next, now);
  base::tls_thread_state.fiber = &next->identity;
  STALLWATCH_TRACE2(slice_begin, record.index, next->identity.id);
}

// While the fiber switched to runs, the one after it (the head of the ready
// queue) is brought into the cache. When I/O, a timer or another thread woke
// it (the wake-ups measured for loop lag) it has been parked a while:
// resuming reads its control block and the frames it parked in (about
// 1.1 KiB above the saved stack pointer of an HTTP connection parked in a
// read) and writes the stack below, and with thousands of connections those
// lines have left the cache since it last ran. Without this the loads come
// one at a time as it returns frame by frame: at 10,000 keep-alive
// connections they were 40% of the loop's user time (docs/BENCHMARKS.md,
// "HTTP: CPU per request at 10,000 connections"). Fetched: from a few lines
// below its saved stack pointer up to the first line of its control block
// (the line a switch reads), at most prefetch_stack_bytes, and the first
// line of the fiber after it, which the next switch reads. A fiber that yielded ran a moment ago and is left alone,
// as is `from` (two fibers taking turns). Only hints: when the queue changes
// meanwhile (FirstInLine), the fetch is wasted, nothing more.
[[gnu::always_inline]] inline void Loop::prefetch_after(const Fiber* from) noexcept {
  const Fiber* next = ready_head_;
  if (next == nullptr || next == from || next->ready_since_ns == 0) return;
  __builtin_prefetch(next->next_ready, 1, 3);
  const auto top = reinterpret_cast<std::uintptr_t>(next);
  const auto sp = reinterpret_cast<std::uintptr_t>(next->context);
  if (sp >= top || top - sp > prefetch_stack_bytes) return;  // not parked on this stack, or deep: left to the CPU
  for (std::uintptr_t line = (sp - prefetch_below_bytes) & ~std::uintptr_t{63}; line < top + 64; line += 64) {
    __builtin_prefetch(reinterpret_cast<const void*>(line), 1, 3);
  }
}

// Everything before the jump: `from`'s stack canary is checked, the switch
// window opens, `to` becomes the running fiber.
[[gnu::always_inline]] inline void Loop::enter_switch(Fiber* from, Fiber* to, std::uint64_t now,
                                                      bool from_finished) noexcept {
  // A fiber whose stack has no guard page and that ran past its end is
  // stopped here, before another fiber runs on memory it may have written.
  // (from is still the fiber published as running: the fault handler names it.)
  stack::check_canary(from->stack_canary);
  base::tls_thread_state.in_switch = 1;
  prefetch_after(from);
  begin_slice(to, now);
  // Each fiber's own exceptions in flight and being handled. Almost always
  // there are none: then only the thread's copy and a flag on the fibers'
  // first cache line are read.
  ExceptionState& thread_exceptions = *exceptions_;
  const bool from_has = thread_exceptions.caught != nullptr || thread_exceptions.uncaught != 0;
  from->exceptions_saved = from_has;
  if (from_has) [[unlikely]] from->exceptions = thread_exceptions;
  if (to->exceptions_saved) [[unlikely]] {
    thread_exceptions = to->exceptions;
  } else if (from_has) [[unlikely]] {
    thread_exceptions = ExceptionState{};
  }
  sanitizer_start_switch(from->sanitizer, to->sanitizer, from_finished);
  running_ = to;
}

void Loop::switch_to(Fiber* from, Fiber* to, std::uint64_t now) noexcept {
  enter_switch(from, to, now, false);
  const bctx::transfer_t back = jump_to(to->context, from);
  // Resumed: whoever jumped here passed itself, to save where it stopped.
  auto* previous = static_cast<Fiber*>(back.data);
  if (previous != nullptr) previous->context = back.fctx;
  sanitizer_finish_switch(from->sanitizer, previous != nullptr ? &previous->sanitizer : nullptr);
  base::tls_thread_state.in_switch = 0;
}

Fiber* Loop::pick_next(std::uint64_t now) noexcept {
  if (ready_head_ != nullptr && direct_budget_ > 0 && now == pass_coarse_ns_) {
    --direct_budget_;
    return pop_ready();
  }
  return &scheduler_;
}

void Loop::push_ready(Fiber* fiber) noexcept {
  fiber->next_ready = nullptr;
  if (ready_tail_ != nullptr) ready_tail_->next_ready = fiber;
  else ready_head_ = fiber;
  ready_tail_ = fiber;
  ++ready_count_;
}

void Loop::push_ready_first(Fiber* fiber) noexcept {
  fiber->next_ready = ready_head_;
  ready_head_ = fiber;
  if (ready_tail_ == nullptr) ready_tail_ = fiber;
  ++ready_count_;
}

Fiber* Loop::pop_ready() noexcept {
  Fiber* fiber = ready_head_;
  ready_head_ = fiber->next_ready;
  if (ready_head_ == nullptr) ready_tail_ = nullptr;
  --ready_count_;
  return fiber;
}

// ---- parking ----

WakeReason Loop::park(std::uint64_t deadline_ns, bool cancellable) {
  Fiber* self = running_;
  self->wake = WakeReason::none;
  self->parked = true;
  self->cancellable = cancellable;
  if (deadline_ns != 0) {
    self->deadline_ns = deadline_ns;
    timers_.push(self);
  }
  const std::uint64_t now = base::coarse_now();
  switch_to(self, pick_next(now), now);
  self->deadline_ns = 0;
  return self->wake;
}

void Loop::make_ready(Fiber* fiber, WakeReason why, bool measure_lag) noexcept {
  timers_.remove(fiber);
  fiber->parked = false;
  fiber->wake = why;
  fiber->ready_since_ns = measure_lag ? std::max<std::uint64_t>(base::coarse_now(), 1) : 0;  // 0: not measured
  if (fiber->wake_first) [[unlikely]] {
    push_ready_first(fiber);
  } else {
    push_ready(fiber);
  }
}

void Loop::park_one_round(const char* what) {
  FirstInLine first(running_);
  round_parked_seq_ = slice_seq_;
  detail::park_on(round_waiters_, Deadline{}, what);
}

void Loop::polled() noexcept {
  ++io_polls_;
  if (round_waiters_.empty()) return;
  if (ready_head_ != nullptr && slice_seq_ - round_parked_seq_ < direct_switch_budget) return;
  detail::wake_all(round_waiters_);
}

void Loop::detach_from_waits(Fiber* fiber) noexcept {
  if (detail::WaitQueue* queue = fiber->queue) {
    if (fiber->queue_prev != nullptr) fiber->queue_prev->queue_next = fiber->queue_next;
    else queue->first = fiber->queue_next;
    if (fiber->queue_next != nullptr) fiber->queue_next->queue_prev = fiber->queue_prev;
    else queue->last = fiber->queue_prev;
    fiber->queue = nullptr;
    fiber->queue_prev = fiber->queue_next = nullptr;
  }
  reactor_.drop_waiter(&fiber->io);
}

void Loop::cancel(Fiber* fiber) noexcept {
  fiber->cancel_requested = true;
  if (!fiber->parked || !fiber->cancellable) return;
  detach_from_waits(fiber);
  make_ready(fiber, WakeReason::cancelled);
}

void Loop::yield() {
  Fiber* self = running_;
  throw_if_cancel_requested(self, "yield");
  Fiber* next = ready_head_;
  const std::uint64_t now = base::coarse_now();
  if (direct_budget_ > 0 && now == pass_coarse_ns_) [[likely]] {
    --direct_budget_;
    // Alone, self keeps running; the budget and the clock still send a run
    // of such yields through the scheduler (timers, I/O), as they do a run
    // of switches.
    if (next == nullptr) return;
    // The queue is not empty, so self goes behind its tail and the head comes
    // off without a branch; the count stays the same.
    self->next_ready = nullptr;
    ready_tail_->next_ready = self;
    ready_tail_ = self;
    ready_head_ = next->next_ready;
  } else {
    push_ready(self);
    next = &scheduler_;
  }
  switch_to(self, next, now);
}

void Loop::yield_to_scheduler() {
  Fiber* self = running_;
  throw_if_cancel_requested(self, "yield");
  push_ready(self);
  switch_to(self, &scheduler_, base::coarse_now());
}

// ---- the scheduler ----

void Loop::run_until_done(detail::TaskBase* main) {
  bool draining = false;
  for (;;) {
    if (main->done && !draining) {
      draining = true;
      cancel_all();
      // Posts from now on throw loop_stopped; those already queued still run.
      inbox_->close();
    }
    if (draining && alive_ == 0 && !inbox_->has_items() && posted_head_ == nullptr) return;
    scheduler_pass();
  }
}

void Loop::scheduler_pass() {
  const std::uint64_t now = base::refresh_now();
  fire_timers(now);
  if (inbox_->has_items()) drain_remote();
  if (posted_head_ != nullptr) start_posted_batch();
  if (ready_head_ == nullptr) {
    wait_for_work(now);
    return;
  }
  if ((reactor_.has_waiters() || !round_waiters_.empty()) && now - last_io_poll_ns_ >= busy_io_poll_interval_ns) {
    last_io_poll_ns_ = now;
    const bool remote = reactor_.poll(0, &Loop::io_ready, this);
    polled();
    if (remote) drain_remote();
  }
  publish_gauges();
  direct_budget_ = direct_switch_budget;
  pass_coarse_ns_ = base::coarse_now();
  switch_to(&scheduler_, pop_ready(), pass_coarse_ns_);
}

void Loop::fire_timers(std::uint64_t now_ns) {
  while (!timers_.empty() && timers_.top()->deadline_ns <= now_ns) {
    Fiber* fiber = timers_.top();
    detach_from_waits(fiber);
    make_ready(fiber, WakeReason::timeout, true);
  }
}

void Loop::wait_for_work(std::uint64_t now_ns) {
  // Nothing to run: stacks are readied ahead of a burst, or given back after
  // one, a step at a time; while steps remain the loop only looks for I/O.
  const bool upkeep_left = stacks_.tend(stack_upkeep_step);
  int timeout_ms = -1;
  if (!timers_.empty()) {
    const std::uint64_t due = timers_.top()->deadline_ns;
    const std::uint64_t wait_ns = due > now_ns ? due - now_ns : 0;
    timeout_ms = static_cast<int>(std::min<std::uint64_t>((wait_ns + 999'999) / 1'000'000, 1u << 30));
  }
  publish_gauges();
  end_slice(base::coarse_now());
  record_.slice.idle.store(true, std::memory_order_release);
  STALLWATCH_TRACE1(loop_idle, record_.index);
  // A post that came after the last drain keeps the loop from sleeping; one
  // that comes later finds the flag and writes the eventfd.
  const bool may_sleep =
      inbox_->prepare_to_sleep() && posted_head_ == nullptr && round_waiters_.empty() && !upkeep_left;
  const bool remote = reactor_.poll(may_sleep ? timeout_ms : 0, &Loop::io_ready, this);
  inbox_->woke();
  polled();
  const std::uint64_t woke = base::refresh_now();
  last_io_poll_ns_ = woke;
  // Waking up starts a new slice of the loop's own work.
  slice_start_ns_ = woke;
  record_.slice.start_ns.store(woke, std::memory_order_relaxed);
  record_.slice.fiber_id.store(0, std::memory_order_relaxed);
  record_.slice.seq.store(++slice_seq_, std::memory_order_release);
  record_.slice.idle.store(false, std::memory_order_release);
  if (remote || inbox_->has_items()) drain_remote();
  if (posted_head_ != nullptr) start_posted_batch();
}

void Loop::io_ready(void* fiber, void* loop) noexcept {
  static_cast<Loop*>(loop)->make_ready(static_cast<Fiber*>(fiber), WakeReason::notified, true);
}

void Loop::publish_gauges() noexcept {
  record_.stats.ready_fibers.store(ready_count_, std::memory_order_relaxed);
}

void Loop::cancel_all() noexcept {
  for (Fiber* fiber = all_fibers_; fiber != nullptr; fiber = fiber->all_next) cancel(fiber);
}

}  // namespace stallwatch::core
