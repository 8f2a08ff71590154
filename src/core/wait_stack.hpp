// WaitStack: the stack of a sleep or poll a loop fiber is in, published by
// libstallwatch-probes as the call begins, for the watchdog.
//
// A signal ends nanosleep, poll, select and epoll_wait early with EINTR, so
// capturing the stack of a loop thread stalled in one of them would cut the
// wait short. When the probes are loaded they publish the caller's stack here
// before the wait, and the watchdog reports the stall from it without
// signalling. A seqlock: the loop thread writes, the watchdog reads.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace stallwatch::core {

// A consistent copy of a published wait.
struct WaitSnapshot {
  static constexpr int max_frames = 32;
  std::uint64_t slice_seq = 0;  // the loop's slice counter when the wait began
  std::uint64_t fiber_id = 0;
  std::string fiber_name;
  int depth = 0;
  std::uintptr_t pcs[max_frames] = {};
};

class WaitStack {
 public:
  static constexpr int max_frames = WaitSnapshot::max_frames;
  static constexpr std::size_t max_name = 64;

  // Publishes the wait that begins now. The loop thread only.
  void begin(std::uint64_t slice_seq, std::uint64_t fiber_id, std::string_view fiber_name,
             void* const* pcs, int depth) noexcept {
    const std::uint64_t v = version_.load(std::memory_order_relaxed);
    version_.store(v + 1, std::memory_order_relaxed);  // odd: being written
    std::atomic_thread_fence(std::memory_order_release);
    slice_seq_.store(slice_seq, std::memory_order_relaxed);
    fiber_id_.store(fiber_id, std::memory_order_relaxed);
    const std::size_t name_len = fiber_name.size() < max_name ? fiber_name.size() : max_name;
    for (std::size_t i = 0; i < name_len; ++i) name_[i].store(fiber_name[i], std::memory_order_relaxed);
    name_len_.store(name_len, std::memory_order_relaxed);
    const int n = depth < max_frames ? depth : max_frames;
    for (int i = 0; i < n; ++i) {
      pcs_[i].store(reinterpret_cast<std::uintptr_t>(pcs[i]), std::memory_order_relaxed);
    }
    depth_.store(n, std::memory_order_relaxed);
    in_wait_.store(true, std::memory_order_relaxed);
    version_.store(v + 2, std::memory_order_release);
  }

  // The wait has returned. The loop thread only.
  void end() noexcept { in_wait_.store(false, std::memory_order_release); }

  // Copies the wait in progress into out; false when there is none or a
  // writer raced with the copy. Any thread.
  bool read(WaitSnapshot& out) const {
    const std::uint64_t before = version_.load(std::memory_order_acquire);
    if (before % 2 != 0 || !in_wait_.load(std::memory_order_acquire)) return false;
    out.slice_seq = slice_seq_.load(std::memory_order_relaxed);
    out.fiber_id = fiber_id_.load(std::memory_order_relaxed);
    const std::size_t name_len = name_len_.load(std::memory_order_relaxed);
    out.fiber_name.resize(name_len < max_name ? name_len : max_name);
    for (std::size_t i = 0; i < out.fiber_name.size(); ++i) out.fiber_name[i] = name_[i].load(std::memory_order_relaxed);
    const int n = depth_.load(std::memory_order_relaxed);
    out.depth = n < max_frames ? n : max_frames;
    for (int i = 0; i < out.depth; ++i) out.pcs[i] = pcs_[i].load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    return version_.load(std::memory_order_relaxed) == before && in_wait_.load(std::memory_order_relaxed);
  }

 private:
  std::atomic<std::uint64_t> version_{0};
  std::atomic<bool> in_wait_{false};
  std::atomic<std::uint64_t> slice_seq_{0};
  std::atomic<std::uint64_t> fiber_id_{0};
  std::atomic<std::size_t> name_len_{0};
  std::atomic<char> name_[max_name] = {};
  std::atomic<int> depth_{0};
  std::atomic<std::uintptr_t> pcs_[max_frames] = {};
};

}  // namespace stallwatch::core
