// A loop's cache of freed task blocks, by size class: spawn takes one back
// instead of calling malloc. Loop thread only; blocks come from ::operator
// new, so any block may also go straight back to it.
#pragma once

#include <array>
#include <cstddef>
#include <new>
#include <utility>

namespace stallwatch::core {

class TaskCache {
 public:
  static constexpr std::size_t granule = 32;
  static constexpr std::size_t largest = 512;
  static constexpr std::size_t kept_per_class = 4096;

  TaskCache() = default;
  TaskCache(const TaskCache&) = delete;
  TaskCache& operator=(const TaskCache&) = delete;
  ~TaskCache() {
    for (auto& list : lists_) {
      while (list.head != nullptr) ::operator delete(std::exchange(list.head, list.head->next));
    }
  }

  static bool fits(std::size_t size) { return size <= largest; }
  // Every block of a cacheable size is allocated rounded up to its class, so
  // any of them may be cached and reused for any size of that class.
  static std::size_t rounded(std::size_t size) { return (class_of(size) + 1) * granule; }

  void* take(std::size_t size) {
    List& list = lists_[class_of(size)];
    if (list.head == nullptr) return ::operator new(rounded(size));
    --list.count;
    return std::exchange(list.head, list.head->next);
  }

  void give(void* block, std::size_t size) noexcept {
    List& list = lists_[class_of(size)];
    if (list.count == kept_per_class) {
      ::operator delete(block);
      return;
    }
    ++list.count;
    list.head = new (block) Node{list.head};
  }

 private:
  struct Node {
    Node* next;
  };
  struct List {
    Node* head = nullptr;
    std::size_t count = 0;
  };

  static std::size_t class_of(std::size_t size) { return (size + granule - 1) / granule - 1; }

  std::array<List, largest / granule> lists_{};
};

}  // namespace stallwatch::core
