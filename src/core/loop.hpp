// The Loop: one per thread that calls stallwatch::run. It owns the fibers'
// stacks, the ready queue, the timers and the reactor, and runs the
// scheduler on the thread's own stack.
//
// Fibers switch directly to one another (no trip through the scheduler) for up
// to a budget of switches or until the coarse clock ticks; then the scheduler
// runs a pass: timers, cross-thread wake-ups, I/O. Every switch starts a new
// slice, stamped in the LoopRecord for the watchdog with relaxed stores: no
// system call, lock or allocation.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/fiber.hpp"
#include "core/loop_record.hpp"
#include "core/remote_inbox.hpp"
#include "core/task_cache.hpp"
#include "core/timer_heap.hpp"
#include "reactor/epoll_reactor.hpp"
#include "stack/stack_pool.hpp"
#include "stallwatch/config.hpp"
#include "stallwatch/export.hpp"

namespace stallwatch::core {

class Loop {
 public:
  explicit Loop(const Config& config);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // The calling thread's loop, or null.
  static Loop* current() noexcept { return tls_loop; }
  // The calling thread's loop; throws not_on_loop naming `what` otherwise.
  static Loop& require(const char* what) {
    Loop* loop = tls_loop;
    if (loop == nullptr || loop->running_ == &loop->scheduler_) [[unlikely]] throw_not_on_loop(what);
    return *loop;
  }

  // In a process forked by a fiber (a raw fork()), on the forking thread:
  // the loop the child inherited and must not run, else null. Every
  // stallwatch call there throws (throw_in_forked_child).
  static Loop* forked_copy() noexcept { return tls_forked_loop; }
  // Throws not_on_loop naming `what`, fork(), in_process and run_process.
  [[noreturn, gnu::cold]] static void throw_in_forked_child(const char* what);

  Fiber* running() const noexcept { return running_; }
  const Config& config() const noexcept { return config_; }
  LoopRecord& record() noexcept { return record_; }
  const LoopRecord& record() const noexcept { return record_; }
  reactor::Reactor& reactor() noexcept { return reactor_; }
  TaskCache& task_cache() noexcept { return task_cache_; }

  // Starts task as a new fiber (ready to run; the caller keeps running).
  void start(detail::TaskBase* task, std::string_view name);
  // Runs the scheduler until main is done, then cancels and drains the rest.
  void run_until_done(detail::TaskBase* main);

  // Parks the running fiber until made ready, or until deadline_ns (0: none).
  // The caller has linked it into whatever it waits on. When cancellable is
  // false, cancel() only flags the fiber (for waits that must complete).
  //
  // Exported, with make_ready, yield, detach_from_waits, tls_loop and
  // throw_not_on_loop (which the inline current() and require() use), for
  // the client libraries (libstallwatch-curl, libstallwatch-pg), which park
  // and wake their fibers on the loop. Internal: this header is not installed.
  STALLWATCH_EXPORT WakeReason park(std::uint64_t deadline_ns, bool cancellable = true);
  // Makes a parked fiber ready. measure_lag: stamp it for the loop-lag histogram.
  STALLWATCH_EXPORT void make_ready(Fiber* fiber, WakeReason why, bool measure_lag = false) noexcept;
  // Lets every other ready fiber run once. A run of yields with no other
  // fiber ready ends, like a run of switches, after a budget of them or at a
  // coarse clock tick, when the scheduler takes a pass (timers, I/O).
  STALLWATCH_EXPORT void yield();
  // Like yield(), but the scheduler takes a pass first (due timers, remote
  // wake-ups, I/O at its usual interval), even when no other fiber is ready:
  // for a fiber whose turns are long (the curl driver's socket actions),
  // so that timers and I/O never wait behind a run of them.
  STALLWATCH_EXPORT void yield_to_scheduler();
  // Parks the running fiber for one round of the loop: until the loop polls
  // its descriptors after the other fibers have run a direct run's worth of
  // slices (or run out), then runs it first (FirstInLine). So a fiber that
  // took its share of an iteration gets the next share after a bounded
  // amount of other work, however many fibers are ready, and never crowds
  // them out. `what` names the caller in a cancellation. Cancellable.
  void park_one_round(const char* what);
  // Keeps at least count fiber stacks ready ahead of demand (stack::StackPool::
  // keep_ready), prepared while the loop has nothing else to do: for a
  // listener, whose backlog can hand the loop that many connections at once.
  void keep_stacks_ready(std::size_t count) { stacks_.keep_ready(count); }
  const stack::StackPool& stacks() const noexcept { return stacks_; }
  // Times this loop has polled its descriptors: one per loop iteration.
  std::uint64_t io_polls() const noexcept { return io_polls_; }
  // Flags the fiber cancelled and, if it is parked cancellably, wakes it.
  void cancel(Fiber* fiber) noexcept;
  // Makes fiber ready from another thread (e.g. an in_thread completion).
  void wake_from_remote(Fiber* fiber) noexcept { wake_through(inbox_.get(), fiber); }
  // The same through the fiber's loop's inbox, which may end as soon as the
  // wake is queued (the push holds its own reference). Any thread.
  static void wake_through(RemoteInbox* inbox, Fiber* fiber) noexcept;
  // The loop thread's side of a wake-up queued for fiber (its own or from the
  // inbox): ready if still parked, else kept for await_remote_wake.
  void deliver_wake(Fiber* fiber) noexcept;
  // A wait that ended by deadline or cancellation after its waker had already
  // sent the wake-up: parks until that wake-up arrives, so it never lands on
  // a later wait. The running fiber; not cancellable.
  void await_remote_wake();
  // This loop's inbox (posts, cross-thread wake-ups). Any thread while the loop lives.
  RemoteInbox* inbox() const noexcept { return inbox_.get(); }

  // Unlinks a fiber from its wait queue and descriptor (not its timer).
  STALLWATCH_EXPORT void detach_from_waits(Fiber* fiber) noexcept;

 private:
  struct ThreadBinding {
    explicit ThreadBinding(Loop* loop);
    ~ThreadBinding();
  };

  STALLWATCH_EXPORT static constinit thread_local Loop* tls_loop __attribute__((tls_model("initial-exec")));
  static constinit thread_local Loop* tls_forked_loop __attribute__((tls_model("initial-exec")));
  // pthread_atfork's child handler: unbinds the forking thread's loop.
  static void forget_in_forked_child() noexcept;
  // A fiber's copy in a forked child ended: the child cannot go on to run
  // the parent's other fibers, so it ends here, saying why.
  [[noreturn, gnu::cold]] void end_forked_child(const Fiber& fiber) noexcept;
  [[noreturn, gnu::cold, gnu::noinline]] STALLWATCH_EXPORT static void throw_not_on_loop(const char* what);

  static void fiber_entry(boost::context::detail::transfer_t from) noexcept;
  static boost::context::detail::transfer_t release_dead_fiber(boost::context::detail::transfer_t from) noexcept;

  [[noreturn]] void finish_fiber(Fiber* self) noexcept;
  // now: base::coarse_now(), read once per switch.
  void switch_to(Fiber* from, Fiber* to, std::uint64_t now) noexcept;
  void enter_switch(Fiber* from, Fiber* to, std::uint64_t now, bool from_finished) noexcept;
  void prefetch_after(const Fiber* from) noexcept;
  void begin_slice(Fiber* next, std::uint64_t now) noexcept;
  void end_slice(std::uint64_t now) noexcept;
  void record_lag(Fiber* next, std::uint64_t now) noexcept;
  Fiber* pick_next(std::uint64_t now) noexcept;
  void push_ready(Fiber* fiber) noexcept;
  void push_ready_first(Fiber* fiber) noexcept;
  Fiber* pop_ready() noexcept;
  // Called after every poll of the reactor: counts it, ends a round.
  void polled() noexcept;

  void scheduler_pass();
  void fire_timers(std::uint64_t now_ns);
  void drain_remote();
  static void io_ready(void* fiber, void* loop) noexcept;
  void start_posted_batch() noexcept;
  void start_posted(detail::PostedTask* task) noexcept;
  void refuse_queued_posts() noexcept;
  void wait_for_work(std::uint64_t now_ns);
  void publish_gauges() noexcept;
  void report_lost_exception(const Fiber& fiber, const std::string& what) noexcept;
  void cancel_all() noexcept;

  Config config_;
  TaskCache task_cache_;  // destroyed after the fibers and their tasks are gone
  LoopRecord& record_;
  stack::StackPool stacks_;
  reactor::Reactor reactor_;
  ThreadBinding binding_;

  Fiber scheduler_;
  Fiber* running_ = &scheduler_;
  ExceptionState* exceptions_ = thread_exception_state();  // this thread's, where libstdc++ keeps it
  std::uint64_t next_fiber_id_ = 1;
  std::int64_t alive_ = 0;
  Fiber* all_fibers_ = nullptr;
  Fiber* dead_fiber_ = nullptr;  // finished, its stack not yet released

  Fiber* ready_head_ = nullptr;
  Fiber* ready_tail_ = nullptr;
  std::int64_t ready_count_ = 0;
  int direct_budget_ = 0;
  std::uint64_t pass_coarse_ns_ = 0;
  std::uint64_t last_io_poll_ns_ = 0;
  std::uint64_t io_polls_ = 0;
  detail::WaitQueue round_waiters_;  // park_one_round
  std::uint64_t round_parked_seq_ = 0;  // slice_seq_ when the last of them parked

  std::uint64_t slice_seq_ = 0;
  std::uint64_t slice_start_ns_ = 0;

  TimerHeap timers_;

  // Posts taken from the inbox, not yet started: a burst of posts becomes
  // fibers a batch per scheduler pass, not all at once.
  RemoteNode* posted_head_ = nullptr;
  RemoteNode* posted_tail_ = nullptr;
  // Declared last: needs the reactor's eventfd and the record's index.
  InboxRef inbox_{new RemoteInbox(reactor_.share_wake_fd(), record_.index)};
};

}  // namespace stallwatch::core
