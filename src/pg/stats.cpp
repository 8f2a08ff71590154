// The client's per-loop stats (stats.hpp).
#include "pg/stats.hpp"

#include <deque>
#include <mutex>
#include <utility>

#include "stallwatch/loop.hpp"

namespace stallwatch::inline v1::pg::detail {

namespace {

struct Registry {
  std::mutex mutex;
  std::deque<std::pair<int, LoopPgStats>> loops;  // deque: stable addresses
};

Registry& registry() {
  static auto* r = new Registry;  // never destroyed: read by scrapes until exit
  return *r;
}

}  // namespace

LoopPgStats& this_loop_pg_stats() {
  const int index = this_loop_index();
  thread_local int cached_index = -2;
  thread_local LoopPgStats* cached = nullptr;
  if (index == cached_index) return *cached;
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  LoopPgStats* found = nullptr;
  for (auto& [i, stats] : r.loops) {
    if (i == index) found = &stats;
  }
  if (found == nullptr) {
    r.loops.emplace_back(std::piecewise_construct, std::forward_as_tuple(index), std::forward_as_tuple());
    found = &r.loops.back().second;
  }
  cached_index = index;
  cached = found;
  return *found;
}

void for_each_loop_pg_stats(const std::function<void(int, const LoopPgStats&)>& fn) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  for (const auto& [i, stats] : r.loops) fn(i, stats);
}

}  // namespace stallwatch::inline v1::pg::detail
