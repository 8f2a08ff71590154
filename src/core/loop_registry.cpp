#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "core/loop_record.hpp"

namespace stallwatch::core {

namespace {

struct Registry {
  std::mutex mutex;
  std::vector<std::unique_ptr<LoopRecord>> records;
  std::vector<bool> reserved;  // by index: held for a run_loops thread
};

// The reserved record this thread's next loop takes, -1 for none.
thread_local int tls_reserved_index = -1;

bool is_free(const Registry& r, std::size_t i) {
  return i >= r.records.size() || (!r.records[i]->active.load(std::memory_order_relaxed) && !r.reserved[i]);
}

// Makes records up to index exist (inactive, unreserved). The lock is held.
void grow_to(Registry& r, std::size_t index) {
  while (r.records.size() <= index) {
    auto record = std::make_unique<LoopRecord>();
    record->index = static_cast<int>(r.records.size());
    r.records.push_back(std::move(record));
    r.reserved.push_back(false);
  }
}

LoopRecord& activate(LoopRecord& record) {
  record.wait.reset();
  record.active.store(true, std::memory_order_release);
  return record;
}

// Deliberately leaked: loops and the watchdog may outlive static destruction.
Registry& registry() {
  static Registry* instance = new Registry;
  return *instance;
}

}  // namespace

LoopRecord& claim_loop_record() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (const int reserved = std::exchange(tls_reserved_index, -1); reserved >= 0) {
    r.reserved[static_cast<std::size_t>(reserved)] = false;
    return activate(*r.records[static_cast<std::size_t>(reserved)]);
  }
  std::size_t i = 0;
  while (!is_free(r, i)) ++i;
  grow_to(r, i);
  return activate(*r.records[i]);
}

int reserve_loop_records(int n) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::size_t first = 0;
  for (std::size_t run = 0; run < static_cast<std::size_t>(n);) {
    if (is_free(r, first + run)) {
      ++run;
    } else {
      first += run + 1;
      run = 0;
    }
  }
  grow_to(r, first + static_cast<std::size_t>(n) - 1);
  for (std::size_t i = first; i < first + static_cast<std::size_t>(n); ++i) r.reserved[i] = true;
  return static_cast<int>(first);
}

void claim_reserved_next(int index) { tls_reserved_index = index; }

void end_reservation(int index) {
  // Claimed (the exchange found -1): the record is the loop's, released as it ended.
  if (std::exchange(tls_reserved_index, -1) == index) cancel_reservation(index);
}

void cancel_reservation(int index) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.reserved[static_cast<std::size_t>(index)] = false;
}

void release_loop_record(LoopRecord& record) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  record.tid.store(0, std::memory_order_relaxed);
  record.active.store(false, std::memory_order_release);
}

void for_each_loop_record(const std::function<void(LoopRecord&)>& fn) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  for (auto& record : r.records) fn(*record);
}

}  // namespace stallwatch::core
