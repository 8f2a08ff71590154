// Plain histogram with log-spaced buckets, written by one thread, read by any.
//
// Buckets double from 10 µs: 10 µs, 20 µs, ... 10.49 s, then +Inf. Recording is
// a bit-width and two relaxed load/store pairs: cheap enough for every slice.
// The single writer never does a read-modify-write; readers (the Prometheus
// collectable) see a consistent-enough snapshot with relaxed loads.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstdint>

namespace stallwatch::base {

class LogHistogram {
 public:
  static constexpr std::uint64_t first_bound_ns = 10'000;  // 10 µs
  static constexpr int finite_buckets = 21;                // 10 µs · 2^0 … 2^20
  static constexpr int bucket_count = finite_buckets + 1;  // plus +Inf

  // Upper bound of bucket i in seconds (i < finite_buckets).
  static constexpr double upper_bound_seconds(int i) {
    return static_cast<double>(first_bound_ns << i) / 1e9;
  }

  static constexpr int bucket_for(std::uint64_t ns) {
    if (ns <= first_bound_ns) return 0;
    const std::uint64_t units = (ns - 1) / first_bound_ns;  // ≥ 1
    const int b = static_cast<int>(std::bit_width(units));
    return b < finite_buckets ? b : finite_buckets;
  }

  // Single writer only.
  void record(std::uint64_t ns) {
    auto& bucket = counts_[bucket_for(ns)];
    bucket.store(bucket.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    sum_ns_.store(sum_ns_.load(std::memory_order_relaxed) + ns, std::memory_order_relaxed);
  }

  // Non-cumulative count of bucket i. Any thread.
  std::uint64_t count(int i) const { return counts_[i].load(std::memory_order_relaxed); }
  std::uint64_t sum_ns() const { return sum_ns_.load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<std::uint64_t>, bucket_count> counts_{};
  std::atomic<std::uint64_t> sum_ns_{0};
};

// Counter with a single writer: a relaxed load and store, no lock prefix.
class SingleWriterCounter {
 public:
  void add(std::uint64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::uint64_t get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

}  // namespace stallwatch::base
