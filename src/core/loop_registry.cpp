#include <memory>
#include <mutex>
#include <vector>

#include "core/loop_record.hpp"

namespace stallwatch::core {

namespace {

struct Registry {
  std::mutex mutex;
  std::vector<std::unique_ptr<LoopRecord>> records;
};

// Deliberately leaked: loops and the watchdog may outlive static destruction.
Registry& registry() {
  static Registry* instance = new Registry;
  return *instance;
}

}  // namespace

LoopRecord& claim_loop_record() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  for (auto& record : r.records) {
    if (!record->active.load(std::memory_order_relaxed)) {
      record->wait.reset();
      record->active.store(true, std::memory_order_release);
      return *record;
    }
  }
  auto record = std::make_unique<LoopRecord>();
  record->index = static_cast<int>(r.records.size());
  record->active.store(true, std::memory_order_release);
  r.records.push_back(std::move(record));
  return *r.records.back();
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
