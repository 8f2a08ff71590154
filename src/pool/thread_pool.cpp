// The in_thread offload pool: bounded, threads started on demand, shared by
// every loop of the process. Completion wakes the caller's loop remotely.
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "base/coarse_clock.hpp"
#include "core/loop.hpp"
#include "base/thread_state.hpp"
#include "pool/pool_stats.hpp"
#include "stallwatch/in_thread.hpp"

namespace stallwatch {
namespace pool {

namespace {

class ThreadPool {
 public:
  ThreadPool() : max_threads_(std::max(4u, 2 * std::max(1u, std::thread::hardware_concurrency()))) {
    // A forked child starts with no pool threads; forget the parent's.
    pthread_atfork(nullptr, nullptr, [] { instance().reset_after_fork(); });
  }

  static ThreadPool& instance() {
    // Deliberately leaked: detached workers may still be parked at exit.
    static ThreadPool* pool = new ThreadPool;
    return *pool;
  }

  void submit(detail::OffloadJob& job) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (tail_ != nullptr) tail_->next = &job;
    else head_ = &job;
    tail_ = &job;
    ++pending_;
    if (idle_ > 0) {
      wakeup_.notify_one();
    } else if (threads_ < max_threads_) {
      ++threads_;
      std::thread([this] { work(); }).detach();
    }
  }

  PoolStatsView stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    PoolStatsView view;
    view.pending = pending_;
    for (int i = 0; i < base::LogHistogram::bucket_count; ++i) view.duration_buckets[i] = duration_buckets_[i];
    view.duration_sum_ns = duration_sum_ns_;
    return view;
  }

 private:
  void work() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      while (head_ == nullptr) {
        ++idle_;
        wakeup_.wait(lock);
        --idle_;
      }
      detail::OffloadJob* job = head_;
      head_ = job->next;
      if (head_ == nullptr) tail_ = nullptr;
      lock.unlock();

      const std::uint64_t started = base::monotonic_ns();
      job->run(job);
      const std::uint64_t took = base::monotonic_ns() - started;
      auto* fiber = static_cast<core::Fiber*>(job->fiber);
      core::Loop* loop = fiber->loop;

      lock.lock();
      --pending_;
      ++duration_buckets_[base::LogHistogram::bucket_for(took)];
      duration_sum_ns_ += took;
      lock.unlock();
      loop->wake_from_remote(fiber);  // the job is gone once the fiber resumes
      lock.lock();
    }
  }

  void reset_after_fork() {
    new (&mutex_) std::mutex();
    new (&wakeup_) std::condition_variable();
    head_ = tail_ = nullptr;
    threads_ = idle_ = 0;
    pending_ = 0;
  }

  const unsigned max_threads_;
  std::mutex mutex_;
  std::condition_variable wakeup_;
  detail::OffloadJob* head_ = nullptr;
  detail::OffloadJob* tail_ = nullptr;
  unsigned threads_ = 0;
  unsigned idle_ = 0;
  std::int64_t pending_ = 0;
  std::uint64_t duration_buckets_[base::LogHistogram::bucket_count] = {};
  std::uint64_t duration_sum_ns_ = 0;
};

}  // namespace

PoolStatsView pool_stats() { return ThreadPool::instance().stats(); }

}  // namespace pool

inline namespace v1 {
namespace detail {

void offload(OffloadJob& job) {
  core::Loop& loop = core::Loop::require("in_thread");
  job.fiber = loop.running();
  job.next = nullptr;
  pool::ThreadPool::instance().submit(job);
  loop.park(0, /*cancellable=*/false);
}

}  // namespace detail
}  // namespace v1
}  // namespace stallwatch
