#include "blocking/report_writer.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include "emit/emitter.hpp"
#include "symbolize/shared_symbolizer.hpp"

namespace stallwatch::blocking {
namespace {

class ReportWriter {
 public:
  void submit(PendingReport report) {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(report));
    if (!started_) {
      started_ = true;
      std::thread([this] { run(); }).detach();
    }
    changed_.notify_all();
  }

  bool flush(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [this] { return queue_.empty() && !busy_; });
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      changed_.wait(lock, [this] { return !queue_.empty(); });
      PendingReport report = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
      lock.unlock();
      try {
        name_frames(report);
        emit::write(std::move(report.call));
      } catch (...) {
        // Out of memory naming one report: drop it, keep the writer alive.
      }
      lock.lock();
      busy_ = false;
      changed_.notify_all();
    }
  }

  static void name_frames(PendingReport& report) {
    symbolize::SharedSymbolizer& shared = symbolize::shared_symbolizer();
    std::lock_guard lock(shared.mutex);
    for (int i = 0; i < report.stack.size; ++i) {
      const auto& at = shared.get().symbolize(reinterpret_cast<std::uintptr_t>(report.stack.pcs[i]), true);
      report.call.frames.insert(report.call.frames.end(), at.begin(), at.end());
    }
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<PendingReport> queue_;
  bool busy_ = false;
  bool started_ = false;
};

std::atomic<ReportWriter*> report_writer{nullptr};
std::mutex report_writer_mutex;

ReportWriter& writer() {
  ReportWriter* w = report_writer.load(std::memory_order_acquire);
  if (w != nullptr) return *w;
  std::lock_guard lock(report_writer_mutex);
  w = report_writer.load(std::memory_order_relaxed);
  if (w == nullptr) {
    static const bool flush_at_exit = [] {
      // Reports queued as the process ends still reach the log.
      std::atexit([] { flush_reports(std::chrono::seconds(2)); });
      return true;
    }();
    (void)flush_at_exit;
    w = new ReportWriter;  // never destroyed: the detached thread uses it until exit
    report_writer.store(w, std::memory_order_release);
  }
  return *w;
}

}  // namespace

void submit_report(PendingReport report) { writer().submit(std::move(report)); }

bool flush_reports(std::chrono::milliseconds timeout) {
  ReportWriter* w = report_writer.load(std::memory_order_acquire);
  return w == nullptr || w->flush(timeout);
}

void forget_report_writer_after_fork() noexcept { report_writer.store(nullptr, std::memory_order_relaxed); }

}  // namespace stallwatch::blocking
